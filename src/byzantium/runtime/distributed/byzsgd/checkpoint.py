"""Checkpoints of a distributed ByzSGD run and the step every rank resumes from.

Each server saves its own state every ``training.checkpoint_every`` steps (and when it stops on an
error) under ``servers/ps<s>/checkpoints/step_<t>.pt``: the step ``t`` it will run next, its model,
its momentum buffer, its Byzantine bookkeeping and its wall time. Workers keep no state that
matters across a restart (the synchronous variant's filters start afresh: a first full pull).

**Resume step** ``R`` (:func:`resume_step`): the newest step at which at least ``q_ps`` servers
(a quorum) have a checkpoint. Every server restores its checkpoint at ``R``; a server without one
(it crashed earlier) restores its newest checkpoint before ``R`` (or the initial model) and
rejoins at ``R`` with a stale model, i.e. as a lagging server, which the protocol tolerates among
its ``f_ps`` faults and the next gather contracts. Workers start at ``R``. A local ``launch
--resume`` computes ``R`` from the run directory and passes ``--resume-step R`` to every rank; on
several machines pass it by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ....training.checkpoint import CHECKPOINT_DIR, load_checkpoint, save_checkpoint

__all__ = ["save_server_state", "server_checkpoint_steps", "load_server_state", "resume_step", "KEEP"]

KEEP = 3  # checkpoints kept per server (older ones are deleted)


def _dir(run_dir: Path, s: int) -> Path:
    return Path(run_dir) / "servers" / f"ps{s}"


def server_checkpoint_steps(run_dir: Path, s: int) -> list[int]:
    """Steps with a checkpoint of server ``s`` (sorted)."""
    d = _dir(run_dir, s) / CHECKPOINT_DIR
    if not d.is_dir():
        return []
    return sorted(int(p.stem.split("_")[1]) for p in d.glob("step_*.pt"))


def save_server_state(run_dir: Path, s: int, step: int, state: dict[str, Any]) -> Path:
    """Write server ``s``'s state for resuming at ``step``; keep the newest :data:`KEEP`."""
    path = save_checkpoint(_dir(run_dir, s), step, state)
    for old in server_checkpoint_steps(run_dir, s)[:-KEEP]:
        (path.parent / f"step_{old:07d}.pt").unlink(missing_ok=True)
    return path


def load_server_state(run_dir: Path, s: int, step: int) -> dict[str, Any] | None:
    """Server ``s``'s checkpoint at ``step``, else its newest one before ``step``, else None."""
    have = [t for t in server_checkpoint_steps(run_dir, s) if t <= step]
    if not have:
        return None
    return load_checkpoint(_dir(run_dir, s) / CHECKPOINT_DIR / f"step_{have[-1]:07d}.pt")


def resume_step(run_dir: Path, n_ps: int, quorum: int) -> int:
    """The newest step at which at least ``quorum`` of the ``n_ps`` servers have a checkpoint
    (0 when there is none: the run starts afresh)."""
    counts: dict[int, int] = {}
    for s in range(n_ps):
        for t in server_checkpoint_steps(run_dir, s):
            counts[t] = counts.get(t, 0) + 1
    good = [t for t, c in counts.items() if c >= quorum]
    return max(good, default=0)
