"""Robust aggregation rules and pre-aggregations over stacked ``(n, d)`` gradients.

Public entry point: :func:`get` (``get("trimmed_mean", f=3)(grads)``, ``get("nnm+krum", f=2)``).
Every rule is also importable as a plain function (``byzantium.aggregators.krum``).
"""

from .registry import (
    REGISTRY,
    AggregatorError,
    Constraint,
    ConstraintError,
    NonFiniteError,
)
from .compose import Aggregator, Stage, chain, get, names, parse_spec

# Importing the rule modules registers them.
from . import coordinate as _coordinate  # noqa: F401,E402

from .coordinate import mean, median, trimmed_mean, meamed  # noqa: E402

__all__ = [
    "REGISTRY",
    "Aggregator",
    "AggregatorError",
    "Constraint",
    "ConstraintError",
    "NonFiniteError",
    "Stage",
    "chain",
    "get",
    "names",
    "parse_spec",
    "describe",
    "mean",
    "median",
    "trimmed_mean",
    "meamed",
]


def describe() -> list[tuple[str, str, str, str]]:
    """``(name, kind, constraint on (n, f), summary)`` for every registered entry, rules first."""
    rows = sorted(REGISTRY.values(), key=lambda e: (e.kind != "rule", e.name))
    return [(e.name, e.kind, e.constraint.text, e.summary) for e in rows]
