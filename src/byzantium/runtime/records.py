"""The ``summary.json`` of a single-server run (simulated or real), from its metrics rows."""

from __future__ import annotations

import math
from typing import Any

from .job import Job
from .loop import Clocks

__all__ = ["star_summary", "StarStepperBase"]


def _mean(values: Any) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def star_summary(job: Job, rows: list[dict[str, Any]], clocks: Clocks, *,
                 completed: bool = True) -> dict[str, Any]:
    """Summary of ``job``'s run so far: final and best accuracy, mean distorted and dropped
    files, time per step, the Byzantine placement and the scheme's static facts."""
    cfg = job.cfg
    evals = [r for r in rows if r.get("test_accuracy") is not None]
    n = max(1, len(rows))
    return {
        "label": job.label,
        "scheme": job.scheme_cfg.name,
        "attack": cfg.attack.name if job.attack_enabled else "none",
        "q": job.q,
        "aggregator": job.scheme.aggregator_spec,
        "aggregator_f": job.scheme.aggregator_f,
        "workers": cfg.workers,
        "files": job.scheme.num_files,
        "samples_per_step": job.samples_per_step,
        "steps_completed": len(rows),
        "completed": completed and len(rows) == cfg.training.steps,
        "final_test_accuracy": evals[-1]["test_accuracy"] if evals else None,
        "best_test_accuracy": max((r["test_accuracy"] for r in evals), default=None),
        "final_test_loss": evals[-1]["test_loss"] if evals else None,
        "mean_distorted_files": _mean(r["distorted_files"] for r in rows),
        "mean_dropped_files": _mean(r["dropped_files"] for r in rows),
        "sim_time_per_step": clocks.message_time / n,
        "wall_time_per_step": clocks.wall_time / n,
        "byzantine_workers": list(job.byzantine_workers_initial),
        "placement": cfg.attack.placement,
        "diverged": bool(evals) and not math.isfinite(evals[-1]["test_loss"] or 0.0),
        **job.describe(),
    }


class StarStepperBase:
    """What the single-server steppers share (the simulator's and the parameter server's): the
    model update's evaluation and checkpoint state, and the run summary. Subclasses set
    ``self.job`` and ``self.update`` (a :class:`~.update.ModelUpdate`) and define ``step``."""

    job: Job
    update: Any

    def evaluate(self) -> dict[str, Any]:
        return self.update.evaluate()

    def state_dict(self) -> dict[str, Any]:
        return self.update.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> int:
        return self.update.load_state_dict(state)

    def summary(self, rows: list[dict[str, Any]], clocks: Clocks, error: str | None) -> dict[str, Any]:
        return star_summary(self.job, rows, clocks, completed=error is None)
