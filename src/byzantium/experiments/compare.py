"""``byzantium compare``: the same data, model, attack and seed under several schemes."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from ..config import RunConfig, SchemeConfig
from ..runtime.rundir import prepare_run_dir
from ..runtime.run import run_training
from ..training.results import format_table, plot_accuracy, read_metrics, write_csv_table, write_summary

__all__ = ["run_compare", "COMPARE_HEADERS"]

COMPARE_HEADERS = (
    "scheme",
    "aggregator",
    "f",
    "byzantine",
    "acc (attack)",
    "best (attack)",
    "acc (no attack)",
    "distorted/step",
    "dropped/step",
    "sim s/step",
    "wall ms/step",
)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "scheme"


def _final(summary: dict[str, Any]) -> Any:
    """A run's final accuracy, or ``diverged@STEP`` (a diverged run is a row of the table)."""
    if summary.get("status") == "diverged":
        return f"diverged@{summary['diverged_at_step']}"
    return summary["final_test_accuracy"]


def _outcome(summary: dict[str, Any]) -> str:
    if summary.get("status") == "diverged":
        return f"diverged at step {summary['diverged_at_step']}"
    acc = summary["final_test_accuracy"]
    return "final acc -" if acc is None else f"final acc {acc:.4f}"


def run_compare(
    cfg: RunConfig, out_dir: Path, *, progress: bool = True, log: Any = print, force: bool = False
) -> dict[str, Any]:
    """Train every scheme of ``cfg.compare`` (with the attack, and clean when
    ``cfg.compare_clean``), write one table and one plot, and return them. An ``out_dir`` that
    already holds a compare is refused unless ``force`` (which replaces it)."""
    from ..training.datasets import load_run_dataset

    schemes: list[SchemeConfig] = cfg.compare or [cfg.scheme]
    out_dir = Path(out_dir)
    prepare_run_dir(out_dir, resume=False, force=force)
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset = load_run_dataset(cfg)
    rows: list[list[Any]] = []
    curves: list[tuple[str, list[dict[str, Any]]]] = []
    results: list[dict[str, Any]] = []
    seen: set[str] = set()
    t0 = time.perf_counter()
    for sc in schemes:
        label = sc.display
        slug = _slug(label)
        while slug in seen:
            slug += "_"
        seen.add(slug)
        runs = {}
        variants = [("attack", True)]
        if cfg.compare_clean and cfg.attack.name != "none":
            variants.append(("clean", False))
        for tag, enabled in variants:
            run_dir = out_dir / f"{slug}-{tag}"
            summary = run_training(
                cfg, run_dir, scheme_cfg=sc, attack_enabled=enabled, progress=progress,
                dataset=dataset, label=label if enabled else f"{label} (no attack)", force=force,
            )
            summary.pop("model", None)
            runs[tag] = summary
            curves.append((summary["label"], read_metrics(run_dir / "metrics.csv")))
            log(f"  {summary['label']:<28} {_outcome(summary)}"
                f"  ({time.perf_counter() - t0:.0f}s elapsed)")
        a = runs["attack"]
        c = runs.get("clean")
        rows.append(
            [
                label,
                a["aggregator"],
                a["aggregator_f"],
                a["q"],
                _final(a),
                a["best_test_accuracy"],
                _final(c) if c else None,
                a["mean_distorted_files"],
                a["mean_dropped_files"],
                a["sim_time_per_step"],
                1000 * a["wall_time_per_step"],
            ]
        )
        results.append(runs)
    table = format_table(COMPARE_HEADERS, rows)
    (out_dir / "table.md").write_text(table + "\n")
    write_csv_table(out_dir / "table.csv", COMPARE_HEADERS, rows)
    title = f"{cfg.name}: {cfg.attack.name} (q={cfg.attack.q}, {cfg.attack.placement}), K={cfg.workers}"
    plot_accuracy(out_dir / "accuracy.png", curves, title=title)
    write_summary(out_dir, {"table": [dict(zip(COMPARE_HEADERS, r)) for r in rows], "runs": results})
    return {"table": table, "rows": rows, "runs": results, "out_dir": str(out_dir)}
