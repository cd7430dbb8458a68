"""Checkpoints for exact resume: model, optimizer and scheduler state plus the step reached.

All per-step randomness is derived from ``(seed, stream, step)`` (see :mod:`byzantium.seeding`),
so no generator state needs saving: resuming at step t replays exactly what an uninterrupted run
does from t on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

CHECKPOINT_DIR = "checkpoints"


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / CHECKPOINT_DIR / f"step_{step:07d}.pt"


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors and plain data) for ``step`` atomically; return the path."""
    path = checkpoint_path(run_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"step": step, **state}, tmp)
    tmp.replace(path)
    return path


def latest_checkpoint(run_dir: Path) -> Path | None:
    d = run_dir / CHECKPOINT_DIR
    if not d.is_dir():
        return None
    found = sorted(d.glob("step_*.pt"))
    return found[-1] if found else None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (tensors and plain containers only)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def save_training_state(
    run_dir: Path, step: int, model: Any, optimizer: Any, scheduler: Any, sim_time: float,
    wall_time: float,
) -> Path:
    """Checkpoint everything a run needs to continue exactly at ``step``."""
    return save_checkpoint(run_dir, step, {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "sim_time": sim_time, "wall_time": wall_time,
    })


def restore_training_state(
    run_dir: Path, model: Any, optimizer: Any, scheduler: Any, metrics: Any, resume: bool
) -> tuple[int, float, float, Path | None]:
    """Load the latest checkpoint into model/optimizer/scheduler when ``resume`` (and one exists)
    and cut ``metrics`` back to it; else start the metrics afresh.

    Returns ``(start step, simulated time, wall time, checkpoint path or None)``.
    """
    ck = latest_checkpoint(run_dir) if resume else None
    if ck is None:
        metrics.reset()
        return 0, 0.0, 0.0, None
    state = load_checkpoint(ck)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    start = int(state["step"])
    metrics.truncate(start - 1)
    return start, float(state["sim_time"]), float(state["wall_time"]), ck
