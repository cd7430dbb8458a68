"""Read a finished run directory into one golden record: final losses, final test accuracy and a
checksum of the final model.

Only the run-directory format is used (``config.yaml``, ``metrics.csv``, ``summary.json``,
``checkpoints/``; for a distributed ByzSGD run ``servers/ps<s>/snapshots.pt``), which the redesign
keeps. A single-server run's final model is its last checkpoint's ``model`` state; a ByzSGD run's
is the stack of the correct servers' models (servers ``0 .. n_ps - f_ps - 1``; the last ``f_ps``
are the Byzantine ones when an attack runs), from the simulator's last checkpoint or from each
distributed server's snapshot at the last step.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import torch
import yaml

HEAD = 6
"""Leading entries of the flat parameter vector kept in the record (a readable spot check)."""


def checksum(flat: torch.Tensor) -> dict[str, Any]:
    """float64 sum and sum of squares of a flat vector, its size and its first :data:`HEAD`
    entries: equal vectors give equal checksums; a change anywhere moves the sums."""
    x = flat.detach().to(torch.float64).flatten()
    return {"numel": int(x.numel()), "sum": float(x.sum()), "sumsq": float((x * x).sum()),
            "head": [float(v) for v in x[:HEAD]]}


def _flat_state(state: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([v.detach().flatten().to(torch.float64) for v in state.values()
                      if torch.is_floating_point(v)])


def _last_checkpoint(run_dir: Path) -> dict[str, Any]:
    found = sorted((run_dir / "checkpoints").glob("step_*.pt"))
    if not found:
        raise FileNotFoundError(f"{run_dir}: no checkpoints/step_*.pt (the run wrote none)")
    return torch.load(found[-1], map_location="cpu", weights_only=True)


def _final_model(run_dir: Path, cfg: dict[str, Any], summary: dict[str, Any]) -> torch.Tensor:
    if cfg["scheme"]["name"] != "byzsgd":
        return _flat_state(_last_checkpoint(run_dir)["model"])
    b = cfg["byzsgd"]
    attacked = cfg["attack"]["name"] != "none"
    correct = list(range(b["n_ps"] - (b["f_ps"] if attacked else 0)))
    if summary.get("runtime") == "distributed":
        if summary.get("correct_servers") != correct:
            raise ValueError(f"{run_dir}: correct_servers {summary.get('correct_servers')}, "
                             f"expected {correct}")
        last = cfg["training"]["steps"] - 1
        rows = []
        for s in correct:
            sn = torch.load(run_dir / "servers" / f"ps{s}" / "snapshots.pt", weights_only=True)
            rows.append(sn["models"][sn["steps"].index(last)])
        return torch.stack(rows)
    return _last_checkpoint(run_dir)["byzsgd"]["models"][correct]


def read_run(run_dir: Path) -> dict[str, Any]:
    """The golden record of the finished run in ``run_dir``."""
    run_dir = Path(run_dir)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    with open(run_dir / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    steps = cfg["training"]["steps"]
    if not summary.get("completed") or len(rows) != steps:
        raise ValueError(f"{run_dir}: run not complete ({len(rows)} of {steps} steps, "
                         f"completed={summary.get('completed')})")
    last = rows[-1]
    return {
        "steps": steps,
        "train_loss": float(last["loss"]),
        "test_loss": float(last["test_loss"]),
        "test_accuracy": float(summary["final_test_accuracy"]),
        "params": checksum(_final_model(run_dir, cfg, summary)),
    }
