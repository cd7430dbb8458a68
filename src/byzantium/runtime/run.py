"""``byzantium train``: one scheme of a config in the simulator, into one run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..config import RunConfig, SchemeConfig
from ..schemes.registry import topology
from ..training.results import MetricsWriter, run_config, write_run_config
from .job import build_job
from .loop import BarProgress, train
from .rundir import prepare_run_dir
from .simulator import SimulatedStepper

__all__ = ["run_training"]


def run_training(
    cfg: RunConfig,
    run_dir: Path,
    *,
    scheme_cfg: SchemeConfig | None = None,
    attack_enabled: bool = True,
    resume: bool = False,
    progress: bool = True,
    dataset: Any = None,
    label: str | None = None,
    max_steps: int | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Train ``scheme_cfg`` (default ``cfg.scheme``) in the simulator; return the summary (with
    the trained ``model``).

    ``max_steps`` stops after that many steps of this call (with a checkpoint there), so a test
    can interrupt a run and check that ``resume`` ends with exactly the model of an
    uninterrupted run. A ``run_dir`` that already holds a run is refused unless ``resume``
    (which needs a checkpoint of the same configuration) or ``force`` (which replaces it), see
    :mod:`.rundir`.
    """
    threads = torch.get_num_threads()
    if cfg.training.threads:
        torch.set_num_threads(cfg.training.threads)
    try:
        sc = scheme_cfg or cfg.scheme
        run_dir = Path(run_dir)
        if topology(sc.name) == "replicated":
            from .byzsgd_sim import run_byzsgd

            return run_byzsgd(cfg, run_dir, scheme_cfg=sc, attack_enabled=attack_enabled,
                              resume=resume, progress=progress, dataset=dataset, label=label,
                              max_steps=max_steps, force=force)
        job = build_job(cfg, sc, attack_enabled=attack_enabled, dataset=dataset, label=label)
        config = run_config(cfg, sc, attack_enabled)
        prepare_run_dir(run_dir, resume=resume, force=force, config=config)
        write_run_config(run_dir, cfg, sc, attack_enabled)
        stepper = SimulatedStepper(job)
        t = cfg.training
        summary, _ = train(
            stepper, run_dir=run_dir, steps=t.steps, eval_every=t.eval_every,
            checkpoint_every=t.checkpoint_every, metrics=MetricsWriter(run_dir / "metrics.csv"),
            resume=resume, max_steps=max_steps,
            progress=lambda start: BarProgress(job.label, t.steps, start, enabled=progress),
            plot=(job.label, f"{cfg.name}: {job.label}"),
            config=config,
        )
        summary["model"] = job.model
        return summary
    finally:
        torch.set_num_threads(threads)
