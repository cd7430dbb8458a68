"""``byzantium train`` / ``compare`` for ByzSGD: replicated servers in the simulator.

ByzSGD has no single model: each correct server holds its own. The run directory is the same as
for the single-server schemes (config, metrics.csv, summary.json, accuracy.png); ``test_accuracy``
is the mean over the correct servers, and the summary also gives the min and max (spec P15), the
largest drift between correct servers and the messages per step. ``--resume`` is not supported
for ByzSGD yet (the servers' state is not checkpointed): it raises a clear error.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from ..byzsgd import ByzSGDCluster, ByzSGDParams
from ..config import ConfigError, RunConfig, SchemeConfig, to_dict
from .results import MetricsWriter, plot_accuracy, read_metrics, write_config, write_summary

__all__ = ["run_byzsgd", "byzsgd_params", "lr_schedule"]


def lr_schedule(cfg: RunConfig) -> Callable[[int], float]:
    """The learning rate at step t, as :func:`~byzantium.training.loop.make_optimizer` sets it."""
    o, steps = cfg.optim, cfg.training.steps
    if o.schedule == "step":
        return lambda t: o.lr * o.gamma ** (t // o.step_size)
    if o.schedule == "cosine":
        return lambda t: o.lr * 0.5 * (1 + math.cos(math.pi * t / steps))
    return lambda t: o.lr


def byzsgd_params(cfg: RunConfig, q: int) -> ByzSGDParams:
    """Validated protocol parameters: n_w = ``workers``, f_w = ``q``; errors name the bound."""
    b = cfg.byzsgd
    try:
        return ByzSGDParams(
            n_ps=b.n_ps, f_ps=b.f_ps, n_w=cfg.workers, f_w=q, variant=b.variant,
            gather_period=b.gather_period, lipschitz=b.lipschitz, q_ps=b.q_ps, q_w=b.q_w,
            relaxed=b.relaxed,
        )
    except ValueError as e:
        raise ConfigError(f"byzsgd: {e}") from None


def run_byzsgd(
    cfg: RunConfig,
    run_dir: Path,
    *,
    scheme_cfg: SchemeConfig,
    attack_enabled: bool = True,
    resume: bool = False,
    progress: bool = True,
    dataset: Any = None,
    label: str | None = None,
) -> dict[str, Any]:
    from .data import load_dataset

    if resume:
        raise ConfigError("byzsgd: --resume is not supported for ByzSGD runs yet")
    label = label or scheme_cfg.display
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(
        run_dir,
        {**to_dict(cfg), "scheme": dataclasses.asdict(scheme_cfg), "attack_enabled": attack_enabled},
    )
    if dataset is None:
        dataset = load_dataset(cfg.data.name, root=cfg.data.root, train_size=cfg.data.train_size,
                               seed=cfg.seed, **cfg.data.params)
    q = scheme_cfg.q if scheme_cfg.q is not None else cfg.attack.q
    params = byzsgd_params(cfg, q)
    b = cfg.byzsgd
    attack_on = attack_enabled and cfg.attack.name != "none" and q > 0
    server_on = attack_enabled and b.server_attack != "none" and b.f_ps > 0
    per_worker = cfg.training.batch_size // cfg.workers
    if per_worker < 1:
        raise ConfigError(
            f"training.batch_size: {cfg.training.batch_size} gives no sample per ByzSGD worker "
            f"(workers={cfg.workers})"
        )
    cluster = ByzSGDCluster(
        params, dataset, cfg.model.name, lr=lr_schedule(cfg), batch_size=per_worker,
        server_attack=b.server_attack if server_on else None,
        server_attack_params=b.server_attack_params,
        worker_attack=cfg.attack.name if attack_on else None,
        worker_attack_params=cfg.attack.params,
        scheduler=b.scheduler, server_rule=b.server_rule, model_rule=b.model_rule, dmc=b.dmc,
        model_kwargs=cfg.model.params, seed=cfg.seed,
    )
    metrics = MetricsWriter(run_dir / "metrics.csv")
    metrics.reset()
    steps = cfg.training.steps
    wall = 0.0
    drifts: list[float] = []
    messages = 0
    last: dict[str, float] = {}
    for t in tqdm(range(steps), desc=label, disable=not progress, dynamic_ncols=True, leave=False):
        t0 = time.perf_counter()
        st = cluster.step()
        wall += time.perf_counter() - t0
        msgs = sum(st["messages"].values())
        messages += msgs
        drifts.append(float(st["drift"]))
        row: dict[str, Any] = {"step": t, "loss": st.get("loss"), "lr": st["lr"],
                               "wall_time": wall, "drift": float(st["drift"]), "messages": msgs}
        if (t + 1) % cfg.training.eval_every == 0 or t + 1 == steps:
            last = cluster.evaluate()
            row["test_accuracy"] = last["acc_mean"]
            row["test_loss"] = last["loss_mean"]
        metrics.append(row)
    rows = read_metrics(run_dir / "metrics.csv")
    evals = [r for r in rows if r.get("test_accuracy") is not None]
    summary = {
        "label": label,
        "scheme": "byzsgd",
        "attack": cfg.attack.name if attack_on else "none",
        "server_attack": b.server_attack if server_on else "none",
        "q": q if attack_on else 0,
        "aggregator": f"{b.server_rule} at servers, {b.model_rule} of models"
                      + (", DMC" if b.dmc else ""),
        "aggregator_f": q,
        "workers": cfg.workers,
        "n_ps": b.n_ps,
        "f_ps": b.f_ps,
        "variant": b.variant,
        "gather_period": cluster.T,
        "scheduler": b.scheduler,
        "steps_completed": len(rows),
        "completed": len(rows) == steps,
        "final_test_accuracy": last.get("acc_mean"),
        "final_test_accuracy_min": last.get("acc_min"),
        "final_test_accuracy_max": last.get("acc_max"),
        "best_test_accuracy": max((r["test_accuracy"] for r in evals), default=None),
        "final_test_loss": last.get("loss_mean"),
        "max_drift": max(drifts, default=0.0),
        "messages_per_step": messages / max(1, steps),
        "mean_distorted_files": None,
        "mean_dropped_files": None,
        "sim_time_per_step": None,
        "wall_time_per_step": wall / max(1, steps),
        "accuracy_is": "mean over the correct servers (min and max alongside)",
    }
    write_summary(run_dir, summary)
    plot_accuracy(run_dir / "accuracy.png", [(label, rows)], title=f"{cfg.name}: {label}")
    return summary
