"""The training loop: determinism, exact resume, run directory contents, compare."""

from __future__ import annotations

import json

import torch

from byzantium.config import parse_config
from byzantium.experiments.compare import run_compare
from byzantium.runtime.run import run_training
from byzantium.training.results import read_metrics


def _cfg(**extra):
    raw = {
        "name": "t",
        "workers": 9,
        "data": {"name": "logistic", "train_size": 600, "validation_size": 60,
                 "params": {"dim": 10, "num_classes": 3}},
        "model": {"name": "mlp", "params": {"hidden": [16]}},
        "optim": {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3, "schedule": "step",
                  "step_size": 4, "gamma": 0.5},
        "training": {"steps": 10, "batch_size": 90, "eval_every": 5, "checkpoint_every": 4},
        "scheme": {"name": "byzshield", "assignment": "ramanujan", "m": 3, "s": 3,
                   "aggregator": "trimmed_mean"},
        "attack": {"name": "gaussian", "q": 2, "placement": "redraw", "params": {"std": 5.0}},
        "stragglers": {"model": "exponential"},
    }
    raw.update(extra)
    return parse_config(raw)


def _params(summary):
    return torch.nn.utils.parameters_to_vector(summary["model"].parameters()).detach()


def test_same_config_same_numbers_bit_for_bit(tmp_path) -> None:
    a = run_training(_cfg(), tmp_path / "a", progress=False)
    b = run_training(_cfg(), tmp_path / "b", progress=False)
    assert torch.equal(_params(a), _params(b))
    assert (tmp_path / "a" / "metrics.csv").read_text() != ""
    ra, rb = read_metrics(tmp_path / "a" / "metrics.csv"), read_metrics(tmp_path / "b" / "metrics.csv")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_time"} for r in rows]
    assert strip(ra) == strip(rb)
    c = run_training(_cfg(seed=1), tmp_path / "c", progress=False)
    assert not torch.equal(_params(a), _params(c))


def test_resume_ends_with_the_uninterrupted_model(tmp_path) -> None:
    full = run_training(_cfg(), tmp_path / "full", progress=False)
    part = run_training(_cfg(), tmp_path / "resumed", progress=False, max_steps=7)
    assert part["steps_completed"] == 7 and not part["completed"]
    done = run_training(_cfg(), tmp_path / "resumed", progress=False, resume=True)
    assert done["completed"] and done["steps_completed"] == 10
    assert torch.equal(_params(full), _params(done))
    rows = read_metrics(tmp_path / "resumed" / "metrics.csv")
    assert [r["step"] for r in rows] == list(range(10))


def test_run_directory_contents(tmp_path) -> None:
    s = run_training(_cfg(), tmp_path / "r", progress=False)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["steps_completed"] == 10 and summary["q"] == 2
    assert summary["final_test_accuracy"] == s["final_test_accuracy"]
    rows = read_metrics(tmp_path / "r" / "metrics.csv")
    assert {"step", "loss", "test_accuracy", "sim_time", "wall_time", "distorted_files"} <= set(rows[0])
    assert rows[-1]["sim_time"] > rows[0]["sim_time"] > 0
    assert (tmp_path / "r" / "checkpoints").is_dir()
    assert (tmp_path / "r" / "config.yaml").read_text().startswith("name: t")


def test_compare_writes_one_table_and_plot(tmp_path) -> None:
    cfg = _cfg(
        compare=[{"name": "vanilla"}, {"name": "robust", "aggregator": "median", "label": "med"}],
        training={"steps": 4, "batch_size": 90, "eval_every": 2},
        attack={"name": "sign_flip", "q": 2},
        stragglers={"model": "none"},
    )
    res = run_compare(cfg, tmp_path / "cmp", progress=False, log=lambda *_: None)
    assert len(res["rows"]) == 2
    text = (tmp_path / "cmp" / "table.md").read_text()
    assert "med" in text and "vanilla" in text
    assert (tmp_path / "cmp" / "accuracy.png").stat().st_size > 1000
    assert len(list((tmp_path / "cmp").glob("*-clean"))) == 2
