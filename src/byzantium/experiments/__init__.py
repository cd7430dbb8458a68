"""Experiments over whole runs: ``compare`` (one table of several schemes)."""
