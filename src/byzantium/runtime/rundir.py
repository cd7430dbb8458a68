"""Run directories that never lose or mix a result.

* a run directory that already holds a run is refused unless the run is resumed (``--resume``)
  or replaced on purpose (``--force``, which removes the old results first);
* ``--resume`` needs a checkpoint to resume, and the checkpoint must come from the same
  configuration (:func:`mixing_differences` names the fields that differ; how the run is
  observed, and its length outside the cosine schedule, may change).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..training.checkpoint import latest_checkpoint, load_checkpoint
from ..typed import ConfigError

__all__ = ["prepare_run_dir", "check_resumable", "config_differences", "mixing_differences",
           "RESULT_NAMES",
           "OBSERVATION_FIELDS"]

RESULT_NAMES = ("metrics.csv", "summary.json", "checkpoints", "events.jsonl", "accuracy.png",
                "drift.png", "config.yaml", "servers", "workers", "table.md", "table.csv")
"""What a run (or a compare) writes into its directory."""


def prepare_run_dir(run_dir: Path, *, resume: bool, force: bool,
                    config: dict[str, Any] | None = None) -> None:
    """Check (and with ``force`` clear) ``run_dir`` before a run writes into it; with ``resume``
    and the run's ``config`` (plain data), also that its newest checkpoint was written by that
    configuration, so a refused resume leaves the directory as it was."""
    run_dir = Path(run_dir)
    if resume and force:
        raise ConfigError("--resume and --force contradict each other: resume continues the run "
                          "in the directory, force replaces it")
    held = [n for n in RESULT_NAMES if (run_dir / n).exists()]
    if resume:
        ck = latest_checkpoint(run_dir)
        if ck is None:
            raise ConfigError(
                f"--resume: {run_dir} holds no checkpoint to resume (set "
                "training.checkpoint_every, or run without --resume to start afresh)"
            )
        if config is not None:
            check_resumable(load_checkpoint(ck), ck, config)
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


OBSERVATION_FIELDS = ("name", "out_dir", "training.eval_every", "training.eval_batch_size",
                      "training.checkpoint_every", "training.threads")
"""Fields that change how a run is observed or stored, not what its steps compute: a resume may
change them. ``training.steps`` may change too (a run continued for longer), except under the
cosine schedule, whose learning rate at every step depends on it."""


def mixing_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The fields in which ``current`` differs from the config that wrote a checkpoint and that
    would make the resumed run a hybrid of two configurations (:data:`OBSERVATION_FIELDS` and,
    outside the cosine schedule, ``training.steps`` excepted)."""
    cosine = current.get("optim", {}).get("schedule") == "cosine"
    allowed = set(OBSERVATION_FIELDS) | (set() if cosine else {"training.steps"})
    return [f for f in config_differences(saved, current) if f not in allowed]


def check_resumable(state: dict[str, Any], path: Path, config: dict[str, Any] | None) -> None:
    """Refuse to resume checkpoint ``state`` (read from ``path``) under ``config`` when the
    configuration that wrote it differs in a field that would mix the two runs."""
    if config is None or "config" not in state:
        return
    diff = mixing_differences(state["config"], config)
    if diff:
        raise ConfigError(
            f"--resume: {path} was written by another configuration (fields that differ: "
            f"{', '.join(diff[:12])}{' ...' if len(diff) > 12 else ''}); resume only the run "
            "that wrote it, or start a new run"
        )


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
