"""Run directories never lose or mix a result: reuse is refused without --resume or --force,
--resume needs a checkpoint of the same configuration, and the refusal names what is wrong."""

from __future__ import annotations

import json

import pytest

from byzantium.config import ConfigError, parse_config
from byzantium.experiments.compare import run_compare
from byzantium.runtime.run import run_training
from byzantium.training.results import read_metrics

RAW = {
    "workers": 7, "seed": 0,
    "data": {"name": "logistic", "train_size": 600, "validation_size": 60,
             "params": {"dim": 10, "num_classes": 3}},
    "model": {"name": "logreg"},
    "optim": {"lr": 0.1, "momentum": 0.9},
    "training": {"steps": 6, "batch_size": 70, "eval_every": 3, "eval_batch_size": 200,
                 "checkpoint_every": 3},
    "scheme": {"name": "robust", "aggregator": "median"},
}


def test_an_existing_run_is_refused_then_replaced_with_force(tmp_path) -> None:
    cfg = parse_config(RAW)
    first = run_training(cfg, tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match=r"already holds a run \(metrics.csv, summary.json, "
                                          r"checkpoints.*--resume.*--force"):
        run_training(cfg, tmp_path / "run", progress=False)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps_completed"] == 6
    other = parse_config({**RAW, "training": {**RAW["training"], "steps": 3}})
    again = run_training(other, tmp_path / "run", progress=False, force=True)
    assert again["steps_completed"] == 3 and first["steps_completed"] == 6
    assert [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.csv")] == [0, 1, 2]
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step_0000003.pt"]
    with pytest.raises(ConfigError, match="contradict"):
        run_training(cfg, tmp_path / "run", progress=False, resume=True, force=True)


def test_resume_needs_a_checkpoint_of_the_same_configuration(tmp_path) -> None:
    cfg = parse_config(RAW)
    with pytest.raises(ConfigError, match="holds no checkpoint to resume"):
        run_training(cfg, tmp_path / "run", progress=False, resume=True)
    assert not (tmp_path / "run").exists()
    run_training(cfg, tmp_path / "run", progress=False, max_steps=3)
    changed = parse_config({**RAW, "optim": {"lr": 0.2, "momentum": 0.9},
                            "scheme": {"name": "robust", "aggregator": "trimmed_mean"}})
    with pytest.raises(ConfigError, match=r"fields that differ: optim.lr, scheme.aggregator\)"):
        run_training(changed, tmp_path / "run", progress=False, resume=True)
    before = (tmp_path / "run" / "config.yaml").read_text()  # the refusal wrote nothing
    assert "trimmed_mean" not in before and "median" in before
    done = run_training(cfg, tmp_path / "run", progress=False, resume=True)
    assert done["status"] == "completed" and done["steps_completed"] == 6


def test_compare_into_an_existing_directory_is_refused_without_force(tmp_path) -> None:
    cfg = parse_config({**RAW, "compare": [{"name": "vanilla"}]})
    run_compare(cfg, tmp_path / "cmp", progress=False, log=lambda *_: None)
    with pytest.raises(ConfigError, match="already holds a run"):
        run_compare(cfg, tmp_path / "cmp", progress=False, log=lambda *_: None)
    out = run_compare(cfg, tmp_path / "cmp", progress=False, log=lambda *_: None, force=True)
    assert len(out["rows"]) == 1


def test_resume_may_change_how_a_run_is_observed_and_its_length(tmp_path) -> None:
    """Eval and checkpoint cadence, threads and (outside the cosine schedule) the number of
    steps do not change what the steps compute: a resume may change them; under cosine the
    schedule depends on the number of steps, so changing it is refused."""
    cfg = parse_config(RAW)
    run_training(cfg, tmp_path / "run", progress=False, max_steps=3)
    longer = parse_config({**RAW, "training": {**RAW["training"], "steps": 9, "eval_every": 2}})
    assert run_training(longer, tmp_path / "run", progress=False, resume=True)["steps_completed"] == 9
    cos = {**RAW, "optim": {"lr": 0.1, "momentum": 0.9, "schedule": "cosine"}}
    run_training(parse_config(cos), tmp_path / "cos", progress=False, max_steps=3)
    with pytest.raises(ConfigError, match=r"fields that differ: training.steps\)"):
        run_training(parse_config({**cos, "training": {**RAW["training"], "steps": 9}}),
                     tmp_path / "cos", progress=False, resume=True)
