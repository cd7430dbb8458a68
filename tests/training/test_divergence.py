"""Divergence is a recorded result: the run stops cleanly with ``"status": "diverged"``, the
step and the reason, the last finite metrics, exit code 0; ``compare`` goes on and tables it."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from byzantium.cli import main
from byzantium.config import parse_config
from byzantium.experiments.compare import run_compare
from byzantium.runtime.run import run_training
from byzantium.training.results import read_metrics

BASE = {
    "workers": 7, "seed": 0,
    "data": {"name": "logistic", "train_size": 600, "validation_size": 60,
             "params": {"dim": 10, "num_classes": 3}},
    "model": {"name": "logreg"},
    "optim": {"lr": 0.1, "momentum": 0.0},
    "training": {"steps": 12, "batch_size": 70, "eval_every": 3, "eval_batch_size": 200},
}


@pytest.mark.parametrize("over, reason", [
    ({"attack": {"name": "constant", "q": 2, "params": {"c": 3e38}}}, "mean"),   # NaN/Inf rows
    ({"attack": {"name": "gaussian", "q": 2, "params": {"std": 1e38}}}, "overflowed"),  # overflow
    ({"optim": {"lr": 1e38, "momentum": 0.9}}, ""),                               # lr blows up
])
def test_a_diverging_run_is_a_result(over, reason, tmp_path) -> None:
    cfg = parse_config({**BASE, **over})
    summary = run_training(cfg, tmp_path / "run", progress=False)
    assert summary["status"] == "diverged" and summary["diverged"] and not summary["completed"]
    assert reason in summary["divergence"]
    at = summary["diverged_at_step"]
    assert 0 <= at < 12
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk["status"] == "diverged" and on_disk["diverged_at_step"] == at
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    assert all(math.isfinite(r["loss"]) for r in rows if r.get("loss") is not None)
    assert len(rows) <= at + 1


def test_a_normal_run_is_completed(tmp_path) -> None:
    summary = run_training(parse_config(BASE), tmp_path / "run", progress=False)
    assert summary["status"] == "completed" and summary["completed"] and not summary["diverged"]


def test_compare_goes_on_after_a_diverging_entry(tmp_path) -> None:
    cfg = parse_config({**BASE, "attack": {"name": "constant", "q": 2, "params": {"c": 3e38}},
                        "compare": [{"name": "vanilla"}, {"name": "robust", "aggregator": "median"}]})
    out = run_compare(cfg, tmp_path / "cmp", progress=False, log=lambda *_: None)
    (vanilla, median) = out["rows"]
    assert str(vanilla[4]).startswith("diverged@")          # the attacked vanilla run
    assert isinstance(median[4], float) and median[4] > 0.3  # the median survives the attack
    assert "diverged@" in (tmp_path / "cmp" / "table.md").read_text()


def test_train_command_exits_0_on_divergence(tmp_path, capsys) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**BASE, "optim": {"lr": 1e38, "momentum": 0.9}}))
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert "diverged at step" in capsys.readouterr().out
