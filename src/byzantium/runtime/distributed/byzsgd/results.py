"""Merge the per-rank outputs of a distributed ByzSGD run into the usual run directory.

Each server writes ``servers/ps<s>/`` and each worker ``workers/w<j>.json`` (see
:mod:`.server`, :mod:`.worker`). :func:`merge_run` writes, next to them, what ``byzantium train``
writes for a simulated ByzSGD run: ``metrics.csv`` (per step: the correct servers' mean loss;
at eval steps their mean test accuracy and the drift = max pairwise distance between their
models, from the snapshots), ``summary.json`` (accuracy mean/min/max over the correct servers
that finished, the largest drift seen, frames per step by kind counted by the senders, the median
server step time), ``accuracy.png`` and ``drift.png``.

Correct servers: the first ``n_ps - f_ps`` when a server attack is set, else all; a server that
crashed (fault injection or a real failure) still counts as correct up to its last snapshot, and
the final accuracy is over the correct servers that completed.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import torch

from ....byzsgd import drift
from ....training.results import MetricsWriter, plot_accuracy, plot_drift, read_metrics, write_run_config, write_summary

__all__ = ["merge_run"]


def _correct_servers(cfg: Any) -> list[int]:
    b = cfg.byzsgd
    nb = b.f_ps if (b.server_attack != "none" and b.f_ps > 0) else 0
    return list(range(b.n_ps - nb))


def merge_run(cfg: Any, run_dir: Path, *, label: str | None = None) -> dict[str, Any]:
    """Write ``metrics.csv``, ``summary.json`` and ``accuracy.png`` of a distributed ByzSGD run
    (and ``config.yaml``) from its per-rank outputs; return the summary."""
    run_dir = Path(run_dir)
    write_run_config(run_dir, cfg, cfg.scheme)
    b = cfg.byzsgd
    steps = cfg.training.steps
    correct = _correct_servers(cfg)
    rows_of: dict[int, list[dict[str, Any]]] = {}
    summ_of: dict[int, dict[str, Any]] = {}
    snaps: dict[int, dict[int, torch.Tensor]] = {}
    for s in range(b.n_ps):
        d = run_dir / "servers" / f"ps{s}"
        if (d / "metrics.csv").exists():
            rows_of[s] = read_metrics(d / "metrics.csv")
        if (d / "summary.json").exists():
            summ_of[s] = json.loads((d / "summary.json").read_text())
        if (d / "snapshots.pt").exists() and s in correct:
            sn = torch.load(d / "snapshots.pt", weights_only=True)
            snaps[s] = dict(zip(sn["steps"], sn["models"]))
    workers = []
    for j in range(cfg.workers):
        p = run_dir / "workers" / f"w{j}.json"
        if p.exists():
            workers.append(json.loads(p.read_text()))

    by_step: dict[int, list[dict[str, Any]]] = {}
    for s in correct:
        for r in rows_of.get(s, []):
            by_step.setdefault(int(r["step"]), []).append(r)
    merged: list[dict[str, Any]] = []
    drifts: list[float] = []
    for t in range(steps):
        rs = by_step.get(t, [])
        if not rs:
            continue
        losses = [r["loss"] for r in rs if r.get("loss") is not None]
        row: dict[str, Any] = {
            "step": t, "loss": sum(losses) / len(losses) if losses else None, "lr": rs[0].get("lr"),
            "wall_time": max(r["wall_time"] for r in rs), "received": min(r["received"] for r in rs),
        }
        accs = [r["test_accuracy"] for r in rs if r.get("test_accuracy") is not None]
        if accs:
            row["test_accuracy"] = sum(accs) / len(accs)
            tl = [r["test_loss"] for r in rs if r.get("test_loss") is not None]
            row["test_loss"] = sum(tl) / len(tl) if tl else None
            models = [snaps[s][t] for s in correct if s in snaps and t in snaps[s]]
            if len(models) >= 1:
                row["drift"] = drift(torch.stack(models))
                drifts.append(row["drift"])
        merged.append(row)
    writer = MetricsWriter(run_dir / "metrics.csv")
    writer.reset()
    writer.append_many(merged)

    finished = [s for s in correct if summ_of.get(s, {}).get("completed")]
    final = {s: rows_of[s][-1].get("test_accuracy") for s in finished if rows_of.get(s)}
    final_accs = [a for a in final.values() if a is not None]
    step_times = []
    for s in correct:
        walls = [r["wall_time"] for r in rows_of.get(s, [])]
        deltas = [b_ - a_ for a_, b_ in zip([0.0, *walls[:-1]], walls)]
        if deltas:
            step_times.append(statistics.median(deltas))
    frames: dict[str, int] = {}
    replaced = sum(v.get("frames_replaced", 0) for v in [*summ_of.values(), *workers])
    undelivered = sum(v.get("frames_undelivered", 0) for v in [*summ_of.values(), *workers])
    for src in [*summ_of.values(), *workers]:
        for k, v in src.get("frames_sent", {}).items():
            frames[k] = frames.get(k, 0) + v
    # the last step + 1 (a server that fell behind and skipped steps has fewer rows)
    done_steps = max((int(rows_of[s][-1]["step"]) + 1 for s in correct if rows_of.get(s)), default=0)
    first = max((v.get("first_step", 0) for v in summ_of.values()), default=0)  # a resume's step
    per_step = {k: v / max(1, done_steps - first) for k, v in sorted(frames.items())}
    q = cfg.attack.q if cfg.attack.name != "none" else 0
    errors = {str(s): v["error"] for s, v in summ_of.items() if v.get("error")}
    summary = {
        "label": label or cfg.scheme.display,
        "scheme": "byzsgd",
        "runtime": "distributed",
        "attack": cfg.attack.name if q else "none",
        "server_attack": b.server_attack if b.f_ps > 0 else "none",
        "q": q,
        "workers": cfg.workers,
        "n_ps": b.n_ps,
        "f_ps": b.f_ps,
        "variant": b.variant,
        "gather_period": next((v.get("gather_period") for v in summ_of.values()), None),
        "correct_servers": correct,
        "servers_completed": sorted(s for s, v in summ_of.items() if v.get("completed")),
        "servers_without_summary": sorted(set(range(b.n_ps)) - set(summ_of)),
        "steps_completed": done_steps,
        "resumed_at": first or None,
        "completed": bool(finished) and done_steps == steps,
        "final_test_accuracy": sum(final_accs) / len(final_accs) if final_accs else None,
        "final_test_accuracy_min": min(final_accs, default=None),
        "final_test_accuracy_max": max(final_accs, default=None),
        "best_test_accuracy": max((r["test_accuracy"] for r in merged if r.get("test_accuracy") is not None),
                                  default=None),
        "max_drift": max(drifts, default=0.0),
        "drift_is": "max pairwise distance of the correct servers' models at eval steps",
        "frames_per_step": per_step,
        "messages_per_step": sum(per_step.values()),
        "frames_replaced": replaced,
        "frames_undelivered": undelivered,
        "frames_counted_by": ("the steps this process ran (after a resume: from it on); the senders that finished (a killed rank's frames are not counted); "
                              "replaced: superseded in a latest-only outbox before being sent; "
                              "undelivered: the peer was gone or the sender closed first"),
        "wall_time_per_step": statistics.median(step_times) if step_times else None,
        "rejections": {str(s): v.get("rejections", {}) for s, v in sorted(summ_of.items())},
        "worker_filters": {str(w["worker"]): w.get("filter") for w in workers} if b.variant == "sync" else None,
        "steps_skipped": {str(s): v.get("steps_skipped", 0) for s, v in sorted(summ_of.items())
                          if v.get("steps_skipped")},
        "worker_steps_skipped": {str(w["worker"]): w["filter"]["skipped_steps"] for w in workers
                                 if (w.get("filter") or {}).get("skipped_steps")},
        "errors": errors,
        "accuracy_is": "mean over the correct servers that completed (min and max alongside)",
    }
    write_summary(run_dir, summary)
    if any(r.get("test_accuracy") is not None for r in merged):
        plot_accuracy(run_dir / "accuracy.png", [(summary["label"], merged)],
                      title=f"{cfg.name}: {summary['label']} (distributed ByzSGD)")
    if drifts:
        plot_drift(run_dir / "drift.png", merged,
                   title=f"{cfg.name}: drift between correct servers at eval steps (distributed, "
                         f"n_ps={b.n_ps}, f_ps={b.f_ps}, T={summary['gather_period']})")
    return summary
