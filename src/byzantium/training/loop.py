"""The training loop: one scheme, one run directory, progress bar, metrics, checkpoints, resume."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..config import RunConfig, SchemeConfig
from .checkpoint import restore_training_state, save_training_state
from .results import MetricsWriter, plot_accuracy, read_metrics, write_run_config, write_summary

__all__ = ["run_training", "make_optimizer"]


def make_optimizer(
    model: torch.nn.Module, cfg: RunConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """SGD with heavy-ball momentum and weight decay, and the configured schedule."""
    o = cfg.optim
    opt = torch.optim.SGD(
        model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay
    )
    if o.schedule == "constant":
        sched: Any = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    elif o.schedule == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=o.step_size, gamma=o.gamma)
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.training.steps)
    return opt, sched


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
) -> dict[str, Any]:
    """Train ``scheme_cfg`` (default ``cfg.scheme``) in the simulated cluster; return the summary.

    ``max_steps`` stops early after that many steps (used by tests to interrupt a run and check
    that ``resume`` ends with exactly the model of an uninterrupted run).
    """
    threads = torch.get_num_threads()
    if cfg.training.threads:
        torch.set_num_threads(cfg.training.threads)
    try:
        if (scheme_cfg or cfg.scheme).name == "byzsgd":
            from .byzsgd_run import run_byzsgd

            return run_byzsgd(cfg, Path(run_dir), scheme_cfg=scheme_cfg or cfg.scheme,
                              attack_enabled=attack_enabled, resume=resume, progress=progress,
                              dataset=dataset, label=label, max_steps=max_steps)
        return _run(cfg, run_dir, scheme_cfg, attack_enabled, resume, progress, dataset, label,
                    max_steps)
    finally:
        torch.set_num_threads(threads)


def _run(
    cfg: RunConfig,
    run_dir: Path,
    scheme_cfg: SchemeConfig | None,
    attack_enabled: bool,
    resume: bool,
    progress: bool,
    dataset: Any,
    label: str | None,
    max_steps: int | None,
) -> dict[str, Any]:
    from ..runtime.simulator import SimulatedCluster
    from .data import load_run_dataset
    from .models import build_model, evaluate

    scheme_cfg = scheme_cfg or cfg.scheme
    label = label or scheme_cfg.display
    run_dir = Path(run_dir)
    write_run_config(run_dir, cfg, scheme_cfg, attack_enabled)
    if dataset is None:
        dataset = load_run_dataset(cfg)
    model = build_model(cfg.model.name, dataset, seed=cfg.seed, **cfg.model.params)
    cluster = SimulatedCluster(cfg, scheme_cfg, dataset, model, attack_enabled=attack_enabled)
    opt, sched = make_optimizer(model, cfg)

    metrics = MetricsWriter(run_dir / "metrics.csv")
    start, sim_time, wall_time, _ = restore_training_state(
        run_dir, model, opt, sched, metrics, resume
    )

    steps = cfg.training.steps
    stop = steps if max_steps is None else min(steps, start + max_steps)
    bar = tqdm(
        range(start, stop), total=steps, initial=start, desc=label, disable=not progress,
        dynamic_ncols=True, leave=False,
    )
    last_eval: dict[str, float] = {}
    params = [p for p in model.parameters() if p.requires_grad]
    for step in bar:
        t0 = time.perf_counter()
        model.train()
        out = cluster.step(step)
        assign_flat_grad(params, out.gradient)
        lr = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        wall_time += time.perf_counter() - t0
        sim_time += out.sim_time
        row: dict[str, Any] = {
            "step": step,
            "loss": out.loss,
            "lr": lr,
            "sim_time": sim_time,
            "wall_time": wall_time,
            "distorted_files": out.info.distorted_files,
            "dropped_files": out.info.dropped_files,
            "received": out.info.received,
            "byzantine_accepted": out.info.byzantine_accepted,
        }
        if (step + 1) % cfg.training.eval_every == 0 or step + 1 == steps:
            last_eval = evaluate(model, dataset, batch_size=cfg.training.eval_batch_size)
            row["test_loss"] = last_eval.get("loss")
            row["test_accuracy"] = last_eval.get("accuracy")
            bar.set_postfix(acc=f"{last_eval.get('accuracy', float('nan')):.3f}")
        metrics.append(row)
        every = cfg.training.checkpoint_every
        if every and (step + 1) % every == 0:
            save_training_state(run_dir, step + 1, model, opt, sched, sim_time, wall_time)
    bar.close()

    rows = read_metrics(run_dir / "metrics.csv")
    summary = summarize_run(
        cfg, cluster, rows, label=label, scheme_cfg=scheme_cfg, sim_time=sim_time,
        wall_time=wall_time, attack=cfg.attack.name if attack_enabled else "none",
    )
    write_summary(run_dir, summary)
    plot_accuracy(run_dir / "accuracy.png", [(label, rows)], title=f"{cfg.name}: {label}")
    summary["model"] = model
    return summary


def summarize_run(
    cfg: RunConfig,
    cluster: Any,
    rows: list[dict[str, Any]],
    *,
    label: str,
    scheme_cfg: SchemeConfig,
    sim_time: float,
    wall_time: float,
    attack: str,
    completed: bool = True,
) -> dict[str, Any]:
    """The ``summary.json`` of a run (simulated or distributed) from its metrics rows."""
    evals = [r for r in rows if r.get("test_accuracy") is not None]
    n = max(1, len(rows))
    return {
        "label": label,
        "scheme": scheme_cfg.name,
        "attack": attack,
        "q": cluster.q,
        "aggregator": cluster.scheme.aggregator_spec,
        "aggregator_f": cluster.scheme.aggregator_f,
        "workers": cfg.workers,
        "files": cluster.scheme.num_files,
        "samples_per_step": cluster.samples_per_step,
        "steps_completed": len(rows),
        "completed": completed and len(rows) == cfg.training.steps,
        "final_test_accuracy": evals[-1]["test_accuracy"] if evals else None,
        "best_test_accuracy": max((r["test_accuracy"] for r in evals), default=None),
        "final_test_loss": evals[-1]["test_loss"] if evals else None,
        "mean_distorted_files": _mean(r["distorted_files"] for r in rows),
        "mean_dropped_files": _mean(r["dropped_files"] for r in rows),
        "sim_time_per_step": sim_time / n,
        "wall_time_per_step": wall_time / n,
        "byzantine_workers": list(cluster.byzantine_workers_initial),
        "placement": cfg.attack.placement,
        "diverged": bool(evals) and not math.isfinite(evals[-1]["test_loss"] or 0.0),
        **cluster.describe(),
    }


def assign_flat_grad(params: list[torch.nn.Parameter], flat: torch.Tensor) -> None:
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).to(p.dtype).clone()
        offset += n
    if offset != flat.numel():
        raise ValueError(f"gradient has {flat.numel()} entries, model has {offset} parameters")


def _mean(values: Any) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None
