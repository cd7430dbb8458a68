"""ByzSGD through byzantium train/compare: run directory, validation of the paper's bounds."""

from __future__ import annotations

import json

import pytest

from byzantium.config import ConfigError, parse_config
from byzantium.training.loop import run_training


def _cfg(**byz):
    return parse_config({
        "workers": 7,
        "data": {"name": "logistic", "train_size": 600, "params": {"dim": 10, "num_classes": 3}},
        "model": {"name": "logreg"},
        "optim": {"lr": 0.1, "momentum": 0.0},
        "training": {"steps": 6, "batch_size": 70, "eval_every": 3, "threads": 1},
        "attack": {"name": "reversed", "q": 2},
        "scheme": {"name": "byzsgd"},
        "byzsgd": {"n_ps": 5, "f_ps": 1, "server_attack": "reverse", **byz},
    })


def test_byzsgd_run_writes_a_run_directory(tmp_path) -> None:
    s = run_training(_cfg(), tmp_path / "r", progress=False)
    assert s["scheme"] == "byzsgd" and s["completed"] and s["q"] == 2
    assert s["server_attack"] == "reverse" and s["gather_period"] >= 1
    assert s["final_test_accuracy_min"] <= s["final_test_accuracy"] <= s["final_test_accuracy_max"]
    on_disk = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert on_disk["messages_per_step"] == s["messages_per_step"] > 0
    assert (tmp_path / "r" / "accuracy.png").exists()


def test_byzsgd_bounds_are_config_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"n_ps >= 3\*f_ps \+ 2"):
        run_training(_cfg(n_ps=4), tmp_path / "r", progress=False)
    with pytest.raises(ConfigError, match="gather_period"):
        _cfg(gather_period=0)
