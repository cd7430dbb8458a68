"""Run directories that never lose or mix a result.

* a run directory that already holds a run is refused unless the run is resumed (``--resume``)
  or replaced on purpose (``--force``, which removes the old results first);
* ``--resume`` needs a checkpoint to resume, and the checkpoint must come from the same
  configuration (:func:`config_differences` names the fields that differ).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..training.checkpoint import latest_checkpoint
from ..typed import ConfigError

__all__ = ["prepare_run_dir", "config_differences", "RESULT_NAMES"]

RESULT_NAMES = ("metrics.csv", "summary.json", "checkpoints", "events.jsonl", "accuracy.png",
                "drift.png", "config.yaml", "servers", "workers", "table.md", "table.csv")
"""What a run (or a compare) writes into its directory."""


def prepare_run_dir(run_dir: Path, *, resume: bool, force: bool) -> None:
    """Check (and with ``force`` clear) ``run_dir`` before a run writes into it."""
    run_dir = Path(run_dir)
    if resume and force:
        raise ConfigError("--resume and --force contradict each other: resume continues the run "
                          "in the directory, force replaces it")
    held = [n for n in RESULT_NAMES if (run_dir / n).exists()]
    if resume:
        if latest_checkpoint(run_dir) is None:
            raise ConfigError(
                f"--resume: {run_dir} holds no checkpoint to resume (set "
                "training.checkpoint_every, or run without --resume to start afresh)"
            )
        return
    if not held:
        return
    if not force:
        raise ConfigError(
            f"{run_dir} already holds a run ({', '.join(held)}); pass --resume to continue it, "
            "--force to replace it, or choose another --out"
        )
    for name in held:
        path = run_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def config_differences(saved: Any, current: Any, path: str = "") -> list[str]:
    """Dotted paths where two plain configs differ (``[]`` when equal)."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out: list[str] = []
        for key in sorted(set(saved) | set(current), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in saved or key not in current:
                out.append(sub)
            else:
                out += config_differences(saved[key], current[key], sub)
        return out
    return [] if saved == current else [path or "(config)"]
