"""Run directories: resolved config, metrics CSV, JSON summary and plots.

A run directory holds::

    config.yaml     the resolved configuration (every default filled in)
    metrics.csv     one row per step (appended as training goes, so a crash loses nothing)
    summary.json    final numbers
    accuracy.png    test accuracy vs step
    drift.png       ByzSGD only: spread of the replicated servers' models vs step
    checkpoints/    model + optimizer state every N steps (for --resume)
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

METRIC_FIELDS = (
    "step",
    "loss",
    "test_loss",
    "test_accuracy",
    "lr",
    "sim_time",
    "wall_time",
    "distorted_files",
    "dropped_files",
    "received",
    "byzantine_accepted",
    "drift",
    "messages",
)


def write_config(run_dir: Path, cfg_dict: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg_dict, sort_keys=False))


def run_config(cfg: Any, scheme_cfg: Any, attack_enabled: bool = True) -> dict[str, Any]:
    """The resolved configuration of a run as plain data: the config with the scheme actually
    run (what ``config.yaml`` holds and every checkpoint carries, to refuse a mixed resume)."""
    from ..typed import to_plain

    return {**to_plain(cfg), "scheme": to_plain(scheme_cfg), "attack_enabled": attack_enabled}


def write_run_config(run_dir: Path, cfg: Any, scheme_cfg: Any, attack_enabled: bool = True) -> None:
    """``config.yaml`` of a run: the resolved configuration with the scheme actually run."""
    write_config(Path(run_dir), run_config(cfg, scheme_cfg, attack_enabled))


class MetricsWriter:
    """Append-only CSV of per-step metrics; :meth:`truncate` supports exact resume. ``fields``:
    the columns (default :data:`METRIC_FIELDS`)."""

    def __init__(self, path: Path, fields: Sequence[str] = METRIC_FIELDS) -> None:
        self.path = path
        self.fields = tuple(fields)

    def reset(self) -> None:
        with self.path.open("w", newline="") as fh:
            csv.DictWriter(fh, fieldnames=self.fields).writeheader()

    def truncate(self, last_step: int) -> list[dict[str, Any]]:
        """Keep rows with ``step <= last_step`` (the checkpoint's), drop the rest; return kept rows."""
        rows = [r for r in read_metrics(self.path) if int(r["step"]) <= last_step]
        self.reset()
        self.append_many(rows)
        return rows

    def append_many(self, rows: Iterable[dict[str, Any]]) -> None:
        with self.path.open("a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore")
            for row in rows:
                w.writerow({k: _fmt(row.get(k)) for k in self.fields})

    def append(self, row: dict[str, Any]) -> None:
        self.append_many([row])


def _fmt(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return v


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    with path.open() as fh:
        for row in csv.DictReader(fh):
            out.append({k: _parse(v) for k, v in row.items()})
    return out


def _parse(v: str) -> Any:
    if v == "":
        return None
    try:
        i = int(v)
        return i
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        return v


def write_summary(run_dir: Path, summary: dict) -> None:
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default))


def _json_default(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


def plot_accuracy(path: Path, curves: Sequence[tuple[str, list[dict[str, Any]]]], title: str) -> None:
    """Test accuracy vs step, one line per (label, metrics rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    colors = plt.get_cmap("tab10").colors
    suffix = " (no attack)"
    bases: list[str] = []
    for label, _ in curves:  # one colour per scheme; its no-attack run is the dashed line
        base = label[: -len(suffix)] if label.endswith(suffix) else label
        if base not in bases:
            bases.append(base)
    for label, rows in curves:
        pts = [(r["step"], r["test_accuracy"]) for r in rows if r.get("test_accuracy") is not None]
        if pts:
            xs, ys = zip(*pts)
            clean = label.endswith(suffix)
            base = label[: -len(suffix)] if clean else label
            color = colors[bases.index(base) % len(colors)]
            ax.plot(xs, ys, "--" if clean else "-", color=color, label=label,
                    linewidth=1.2 if clean else 1.8)
    ax.set_xlabel("step")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_drift(
    path: Path,
    rows: Sequence[dict[str, Any]],
    *,
    title: str,
    gathers: Sequence[Sequence[float]] = (),
) -> None:
    """Spread of replicated models vs step (ByzSGD's drift, dstar_byzsgd.md §2.6): the ``drift``
    column of the metrics ``rows``; ``gathers`` = ``(step, drift before, drift after)`` per gather
    step draws the drop at each gather (the saw-tooth) and marks the post-gather values. The y axis
    is logarithmic when the positive values span more than two decades; non-finite values (a
    diverged baseline) are left out and counted in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pre = {int(g[0]): float(g[1]) for g in gathers}
    xs: list[float] = []
    ys: list[float] = []
    bad = 0
    for r in rows:
        v = r.get("drift")
        if v is None:
            continue
        t = int(r["step"])
        for y in ((pre[t], float(v)) if t in pre else (float(v),)):
            if math.isfinite(y):
                xs.append(t)
                ys.append(y)
            else:
                bad += 1
    fig, ax = plt.subplots(figsize=(9.5, 4.2))
    label = "max pairwise distance of correct servers' models" + (f" ({bad} non-finite)" if bad else "")
    ax.plot(xs, ys, "-", color="tab:blue", linewidth=1.0, label=label)
    marks = [(int(g[0]), float(g[2])) for g in gathers if math.isfinite(float(g[2]))]
    if marks and len(marks) <= 300:
        mx, my = zip(*marks)
        ax.plot(mx, my, "v", color="tab:red", markersize=3.5, label="after a gather (DMC)")
    positive = [y for y in ys if y > 0]
    if positive and max(positive) > 100 * min(positive):
        if len(positive) < len(ys):
            ax.set_yscale("symlog", linthresh=min(positive))
        else:
            ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("drift (L2)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, loc="best", frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with aligned columns (also valid Markdown)."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in r] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(headers))]
    lines = []
    for j, c in enumerate(cells):
        lines.append("| " + " | ".join(x.ljust(w) for x, w in zip(c, widths)) + " |")
        if j == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
    return str(v)


def write_csv_table(path: Path, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(headers)
        w.writerows(rows)
