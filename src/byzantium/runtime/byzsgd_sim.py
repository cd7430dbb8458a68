"""``byzantium train`` / ``compare`` for ByzSGD: replicated servers in the simulator.

ByzSGD has no single model: each correct server holds its own. The run directory is the same as
for the single-server schemes (config, metrics.csv, summary.json, accuracy.png, checkpoints/),
plus ``drift.png``: the spread of the correct servers' models (max pairwise distance) per step,
the quantity DMC keeps bounded (dstar_byzsgd.md §2.6). ``test_accuracy`` is the mean over the
correct servers, and the summary also gives the min and max (spec P15), the drift before and right
after the gathers (the contraction measured) and the messages per step.

The servers run ``torch.optim.SGD``'s update with the configured momentum and weight decay, one
momentum buffer per server, not contracted by DMC (P12); ``momentum: 0`` is the paper's plain SGD.

``--resume`` continues from the latest checkpoint (written every ``training.checkpoint_every``
steps and at the end): the cluster's whole state (:meth:`ByzSGDCluster.state_dict`) is saved, and
every random draw comes from ``(seed, stream, step)``, so a resumed run equals an uninterrupted one
bit for bit. As for the single-server schemes, ``resume`` without a checkpoint starts afresh; a
checkpoint of another kind or shape is a :class:`ConfigError`.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Sequence


from ..byzsgd import ByzSGDCluster, ByzSGDError, ByzSGDParams
from ..config import ConfigError, RunConfig, SchemeConfig, byzsgd_section
from ..training.results import MetricsWriter, plot_drift, run_config, write_run_config
from .loop import BarProgress, Clocks, train
from .rundir import prepare_run_dir
from .update import lr_schedule

__all__ = ["run_byzsgd", "build_byzsgd_cluster", "byzsgd_params", "byzsgd_summary", "lr_schedule"]


def byzsgd_params(cfg: RunConfig, q: int) -> ByzSGDParams:
    """Validated protocol parameters: n_w = ``workers``, f_w = ``q``; errors name the bound."""
    b = cfg.byzsgd
    try:
        return ByzSGDParams(
            n_ps=b.n_ps, f_ps=b.f_ps, n_w=cfg.workers, f_w=q, variant=b.variant,
            gather_period=b.gather_period, lipschitz=b.lipschitz, q_ps=b.q_ps, q_w=b.q_w,
            relaxed=b.relaxed, outliers_norm=b.outliers_norm,
        )
    except ValueError as e:
        raise ConfigError(f"byzsgd: {e}") from None


def _optimizer_label(momentum: float, weight_decay: float) -> str:
    label = "sgd" if momentum == 0.0 else f"sgd+momentum {momentum:g} (per-server buffers, not contracted)"
    return label + (f", weight_decay {weight_decay:g}" if weight_decay else "")


def with_scheme_overrides(cfg: RunConfig, scheme_cfg: SchemeConfig) -> RunConfig:
    """``cfg`` with ``scheme_cfg.byzsgd``'s overrides applied to its ``byzsgd:`` section (a
    ``compare`` entry such as the vanilla replicated baseline)."""
    if not scheme_cfg.byzsgd:
        return cfg
    return dataclasses.replace(cfg, byzsgd=byzsgd_section(cfg, scheme_cfg))


def build_byzsgd_cluster(
    cfg: RunConfig, dataset: Any, *, scheme_cfg: SchemeConfig, attack_enabled: bool = True
) -> ByzSGDCluster:
    """The ByzSGD cluster of a run: validated parameters (:func:`byzsgd_params`, f_w = the scheme's
    or the attack's ``q``), ``batch_size // workers`` examples per worker, the worker attack on iff
    ``attack_enabled`` and ``attack.name != "none"`` and ``q > 0``, the server attack on iff
    ``attack_enabled`` and ``byzsgd.server_attack != "none"`` and ``f_ps > 0``, the servers'
    momentum and weight decay from ``optim``.

    ``cluster.info`` records what the summary needs: ``q`` (the declared f_w), ``attack_on``,
    ``attack`` and ``server_attack`` (``"none"`` when off), ``optimizer`` (a label),
    ``momentum``, ``weight_decay``. Errors are :class:`ConfigError` naming the field.
    """
    cfg = with_scheme_overrides(cfg, scheme_cfg)
    q = scheme_cfg.q if scheme_cfg.q is not None else cfg.attack.q
    params = byzsgd_params(cfg, q)
    b, o = cfg.byzsgd, cfg.optim
    attack_on = attack_enabled and cfg.attack.name != "none" and q > 0
    server_on = attack_enabled and b.server_attack != "none" and b.f_ps > 0
    per_worker = cfg.training.batch_size // cfg.workers
    if per_worker < 1:
        raise ConfigError(
            f"training.batch_size: {cfg.training.batch_size} gives no sample per ByzSGD worker "
            f"(workers={cfg.workers})"
        )
    try:
        cluster = ByzSGDCluster(
            params, dataset, cfg.model.name, lr=lr_schedule(cfg), batch_size=per_worker,
            server_attack=b.server_attack if server_on else None,
            server_attack_params=b.server_attack_params,
            worker_attack=cfg.attack.name if attack_on else None,
            worker_attack_params=cfg.attack.params,
            scheduler=b.scheduler, server_rule=b.server_rule, model_rule=b.model_rule, dmc=b.dmc,
            momentum=o.momentum, weight_decay=o.weight_decay,
            model_kwargs=cfg.model.params, seed=cfg.seed,
        )
    except ByzSGDError as e:
        raise ConfigError(f"byzsgd: {e}") from None
    cluster.info.update(
        q=q, attack_on=attack_on, attack=cfg.attack.name if attack_on else "none",
        server_attack=b.server_attack if server_on else "none",
        optimizer=_optimizer_label(o.momentum, o.weight_decay),
        momentum=o.momentum, weight_decay=o.weight_decay,
    )
    return cluster


def _max(values: Sequence[float]) -> float:
    """Largest value; ``inf`` when any is non-finite (diverged models have unbounded drift)."""
    if any(not math.isfinite(v) for v in values):
        return math.inf
    return max(values, default=0.0)


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def byzsgd_summary(
    cfg: RunConfig,
    cluster: ByzSGDCluster,
    rows: list[dict[str, Any]],
    *,
    label: str,
    gathers: Sequence[Sequence[float]] = (),
    last_eval: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The ``summary.json`` of a ByzSGD run from its metrics ``rows`` (every step so far).

    ``gathers``: one ``(step, drift before, drift after)`` per gather step; the summary gives
    their means (``drift_pre_gather_mean``, ``drift_post_gather_mean``) and ``gather_contraction``
    = post / pre (DMC's measured contraction; ``None`` without gathers). ``last_eval``: the
    latest :meth:`ByzSGDCluster.evaluate` (min/max over servers); else the last evaluated row.
    """
    b, info = cfg.byzsgd, cluster.info
    evals = [r for r in rows if r.get("test_accuracy") is not None]
    last = last_eval or {}
    final_acc = last.get("acc_mean", evals[-1]["test_accuracy"] if evals else None)
    final_loss = last.get("loss_mean", evals[-1]["test_loss"] if evals else None)
    drifts = [float(r["drift"]) for r in rows if r.get("drift") is not None]
    pre = [float(g[1]) for g in gathers]
    post = [float(g[2]) for g in gathers]
    pre_mean, post_mean = _mean(pre), _mean(post)
    n = max(1, len(rows))
    q = info.get("q", 0)
    return {
        "label": label,
        "scheme": "byzsgd",
        "attack": info.get("attack", "none"),
        "server_attack": info.get("server_attack", "none"),
        "q": q if info.get("attack_on") else 0,
        "aggregator": f"{b.server_rule} at servers, {b.model_rule} of models" + (", DMC" if b.dmc else ""),
        "aggregator_f": q,
        "optimizer": info.get("optimizer", "sgd"),
        "momentum": info.get("momentum", 0.0),
        "weight_decay": info.get("weight_decay", 0.0),
        "workers": cfg.workers,
        "n_ps": b.n_ps,
        "f_ps": b.f_ps,
        "variant": b.variant,
        "gather_period": cluster.T,
        "scheduler": b.scheduler,
        "steps_completed": len(rows),
        "completed": len(rows) == cfg.training.steps,
        "final_test_accuracy": final_acc,
        "final_test_accuracy_min": last.get("acc_min"),
        "final_test_accuracy_max": last.get("acc_max"),
        "best_test_accuracy": max((r["test_accuracy"] for r in evals), default=None),
        "final_test_loss": final_loss,
        "diverged": final_loss is not None and not math.isfinite(final_loss),
        "max_drift": _max(drifts),
        "max_drift_pre_gather": _max(drifts + pre),
        "gathers": len(gathers),
        "drift_pre_gather_mean": pre_mean,
        "drift_post_gather_mean": post_mean,
        "gather_contraction": (post_mean / pre_mean if pre_mean and math.isfinite(pre_mean)
                               and post_mean is not None else None),
        "messages_per_step": sum(int(r.get("messages") or 0) for r in rows) / n,
        "mean_distorted_files": None,
        "mean_dropped_files": None,
        "sim_time_per_step": None,
        "wall_time_per_step": (rows[-1].get("wall_time") or 0.0) / n if rows else 0.0,
        "accuracy_is": "mean over the correct servers (min and max alongside)",
    }


class ByzSGDStepper:
    """The training loop's step for simulated ByzSGD: every replicated server and worker of the
    cluster for one step; evaluation over the correct servers; the cluster's state (and the
    gathers' drift record) for checkpoints."""

    def __init__(self, cfg: RunConfig, cluster: ByzSGDCluster, label: str) -> None:
        self.cfg, self.cluster, self.label = cfg, cluster, label
        self.gathers: list[list[float]] = []
        self.last: dict[str, float] = {}

    def step(self, t: int) -> dict[str, Any]:
        st = self.cluster.step()
        if st["gathered"]:
            self.gathers.append([t, float(st["drift_pre_gather"]), float(st["drift"])])
        return {"step": t, "loss": st.get("loss"), "lr": st["lr"], "drift": float(st["drift"]),
                "messages": sum(st["messages"].values())}

    def evaluate(self) -> dict[str, Any]:
        self.last = self.cluster.evaluate()
        return {"test_accuracy": self.last["acc_mean"], "test_loss": self.last["loss_mean"]}

    def state_dict(self) -> dict[str, Any]:
        return {"byzsgd": self.cluster.state_dict(), "gathers": [list(g) for g in self.gathers]}

    def load_state_dict(self, state: dict[str, Any]) -> int:
        if not isinstance(state.get("byzsgd"), dict):
            raise ConfigError(f"byzsgd: --resume found a checkpoint of step {state.get('step')} "
                              f"which is not a ByzSGD checkpoint (keys {sorted(state)}); use "
                              "another run directory")
        try:
            self.cluster.load_state_dict(state["byzsgd"])
        except ByzSGDError as e:
            raise ConfigError(f"byzsgd: --resume cannot use the checkpoint of step "
                              f"{state.get('step')}: {e}") from None
        self.gathers = [list(g) for g in state["gathers"]]
        return self.cluster.t

    def summary(self, rows: list[dict[str, Any]], clocks: Clocks, error: str | None) -> dict[str, Any]:
        return byzsgd_summary(self.cfg, self.cluster, rows, label=self.label, gathers=self.gathers,
                              last_eval=self.last)


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
    max_steps: int | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Train ByzSGD in the simulator into ``run_dir``; return the summary.

    ``max_steps`` stops after that many steps of this call (a checkpoint is written there), so a
    test can interrupt a run and check that ``resume`` ends exactly as an uninterrupted run.
    """
    from ..training.datasets import load_run_dataset

    cfg = with_scheme_overrides(cfg, scheme_cfg)
    label = label or scheme_cfg.display
    run_dir = Path(run_dir)
    if dataset is None:
        dataset = load_run_dataset(cfg)
    cluster = build_byzsgd_cluster(cfg, dataset, scheme_cfg=scheme_cfg, attack_enabled=attack_enabled)
    config = run_config(cfg, scheme_cfg, attack_enabled)
    prepare_run_dir(run_dir, resume=resume, force=force, config=config)
    write_run_config(run_dir, cfg, scheme_cfg, attack_enabled)
    stepper = ByzSGDStepper(cfg, cluster, label)
    t = cfg.training
    summary, rows = train(
        stepper, run_dir=run_dir, steps=t.steps, eval_every=t.eval_every,
        checkpoint_every=t.checkpoint_every, metrics=MetricsWriter(run_dir / "metrics.csv"),
        resume=resume, max_steps=max_steps,
        progress=lambda start: BarProgress(label, t.steps, start, enabled=progress),
        plot=(label, f"{cfg.name}: {label}"),
        config=config,
    )
    plot_drift(run_dir / "drift.png", rows, gathers=stepper.gathers,
               title=(f"{cfg.name}: {label}\nspread of the correct servers' models "
                      f"(n_ps={cfg.byzsgd.n_ps}, f_ps={cfg.byzsgd.f_ps}, "
                      f"{f'T={cluster.T}' if cfg.byzsgd.dmc else 'no DMC'}, "
                      f"server attack={summary['server_attack']})"))
    return summary
