"""ByzSGD through byzantium train/compare: run directory, validation of the paper's bounds."""

from __future__ import annotations

import json

import pytest
import torch

from byzantium.config import ConfigError, parse_config
from byzantium.runtime.byzsgd_sim import build_byzsgd_cluster, run_byzsgd
from byzantium.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from byzantium.training.datasets import load_dataset
from byzantium.runtime.run import run_training
from byzantium.training.results import read_metrics


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


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _final_state(run_dir):
    return load_checkpoint(latest_checkpoint(run_dir))


def test_resume_equals_an_uninterrupted_run(tmp_path, one_thread) -> None:
    """8 steps == 4 steps (interrupted; checkpoint at the stop) + resume to 8, bit for bit:
    models, momentum buffers and the metrics rows (wall time aside)."""
    cfg = _cfg(server_attack="stale", gather_period=3)
    cfg.training.steps, cfg.training.checkpoint_every = 8, 3
    cfg.optim.momentum, cfg.optim.weight_decay = 0.9, 1e-3
    full = run_byzsgd(cfg, tmp_path / "full", scheme_cfg=cfg.scheme, progress=False)
    part = run_byzsgd(cfg, tmp_path / "res", scheme_cfg=cfg.scheme, progress=False, max_steps=4)
    assert part["steps_completed"] == 4 and not part["completed"]
    assert sorted(p.name for p in (tmp_path / "res" / "checkpoints").iterdir()) == [
        "step_0000003.pt", "step_0000004.pt"]
    done = run_byzsgd(cfg, tmp_path / "res", scheme_cfg=cfg.scheme, progress=False, resume=True)
    assert done["completed"] and done["steps_completed"] == 8
    a, b = _final_state(tmp_path / "full")["byzsgd"], _final_state(tmp_path / "res")["byzsgd"]
    assert a["t"] == b["t"] == 8
    assert torch.equal(a["models"], b["models"]) and torch.equal(a["buffers"], b["buffers"])
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_time"} for r in rows]
    ra, rb = read_metrics(tmp_path / "full" / "metrics.csv"), read_metrics(tmp_path / "res" / "metrics.csv")
    assert [r["step"] for r in rb] == list(range(8))
    assert strip(ra) == strip(rb)
    for k in ("final_test_accuracy", "max_drift", "drift_pre_gather_mean", "drift_post_gather_mean",
              "gathers", "messages_per_step", "optimizer"):
        assert full[k] == done[k], k
    assert full["gathers"] == 2  # steps 2 and 5 (T = 3)


def test_resume_needs_a_checkpoint_of_this_run(tmp_path, one_thread) -> None:
    """``--resume`` with no checkpoint, with a checkpoint that is not ByzSGD's, or with one written
    by another configuration is refused, naming what is wrong; nothing is overwritten."""
    cfg = _cfg()
    cfg.training.steps = 2
    with pytest.raises(ConfigError, match="holds no checkpoint to resume"):
        run_byzsgd(cfg, tmp_path / "r", scheme_cfg=cfg.scheme, progress=False, resume=True)
    s = run_byzsgd(cfg, tmp_path / "r", scheme_cfg=cfg.scheme, progress=False)
    assert s["steps_completed"] == 2
    save_checkpoint(tmp_path / "x", 1, {"model": {}, "optimizer": {}})
    with pytest.raises(ConfigError, match="not a ByzSGD checkpoint"):
        run_byzsgd(cfg, tmp_path / "x", scheme_cfg=cfg.scheme, progress=False, resume=True)
    other = _cfg(n_ps=8, f_ps=2)
    other.training.steps = 2
    with pytest.raises(ConfigError, match=r"another configuration \(fields that differ: "
                                          r"byzsgd.f_ps, byzsgd.n_ps\)"):
        run_byzsgd(other, tmp_path / "r", scheme_cfg=other.scheme, progress=False, resume=True)


def test_drift_plot_and_contraction_summary(tmp_path) -> None:
    """Random-model Byzantine server, random arrivals: drift.png is written and the measured
    contraction is real: the mean drift right after the gathers is below the mean before."""
    cfg = _cfg(server_attack="random", gather_period=3, scheduler="random")
    cfg.training.steps = 12
    s = run_training(cfg, tmp_path / "r", progress=False)
    png = tmp_path / "r" / "drift.png"
    assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"
    assert s["gathers"] == 4 and s["gather_period"] == 3
    assert 0 < s["drift_post_gather_mean"] < s["drift_pre_gather_mean"]
    assert s["gather_contraction"] == pytest.approx(s["drift_post_gather_mean"] / s["drift_pre_gather_mean"])
    rows = read_metrics(tmp_path / "r" / "metrics.csv")
    assert s["max_drift"] == max(r["drift"] for r in rows) > 0
    assert s["max_drift_pre_gather"] >= s["max_drift"]
    assert s["optimizer"] == "sgd" and s["momentum"] == 0.0


def test_build_byzsgd_cluster(tmp_path) -> None:
    cfg = _cfg()
    cfg.optim.momentum, cfg.optim.weight_decay = 0.9, 5e-4
    ds = load_dataset("logistic", train_size=600, dim=10, num_classes=3)
    c = build_byzsgd_cluster(cfg, ds, scheme_cfg=cfg.scheme)
    assert c.momentum == 0.9 and c.weight_decay == 5e-4
    assert c.byz_w == [5, 6] and c.byz_ps == [4] and c.params.f_w == 2
    assert c.info["optimizer"] == "sgd+momentum 0.9 (per-server buffers, not contracted), weight_decay 0.0005"
    assert c.info["attack"] == "reversed" and c.info["server_attack"] == "reverse"
    clean = build_byzsgd_cluster(cfg, ds, scheme_cfg=cfg.scheme, attack_enabled=False)
    assert clean.byz_w == [] and clean.byz_ps == [] and clean.params.f_w == 2  # declared bound kept
    assert clean.info["attack"] == clean.info["server_attack"] == "none"
    cfg.training.batch_size = 6
    with pytest.raises(ConfigError, match="batch_size: 6 gives no sample per ByzSGD worker"):
        build_byzsgd_cluster(cfg, ds, scheme_cfg=cfg.scheme)


def test_compare_entries_override_the_byzsgd_section(tmp_path) -> None:
    """A compare entry's ``byzsgd:`` overrides (the vanilla replicated baseline) reach its run
    only; unknown fields and overrides on other schemes are errors naming the entry."""
    raw = {
        "workers": 7,
        "data": {"name": "logistic", "train_size": 600, "params": {"dim": 10, "num_classes": 3}},
        "model": {"name": "logreg"}, "optim": {"lr": 0.1, "momentum": 0.0},
        "training": {"steps": 4, "batch_size": 70, "eval_every": 2, "threads": 1},
        "attack": {"name": "reversed", "q": 2},
        "byzsgd": {"n_ps": 5, "f_ps": 1, "server_attack": "reverse"},
    }
    cfg = parse_config({**raw, "compare": [
        {"name": "byzsgd"},
        {"name": "byzsgd", "label": "vanilla", "byzsgd": {"server_rule": "mean", "model_rule": "mean",
                                                           "dmc": False}}]})
    a = run_training(cfg, tmp_path / "a", scheme_cfg=cfg.compare[0], progress=False)
    b = run_training(cfg, tmp_path / "b", scheme_cfg=cfg.compare[1], progress=False)
    assert a["aggregator"] == "mda at servers, median of models, DMC"
    assert b["aggregator"] == "mean at servers, mean of models"
    with pytest.raises(ConfigError, match=r"unknown field compare\[0\]\.byzsgd\.n_servers"):
        parse_config({**raw, "compare": [{"name": "byzsgd", "byzsgd": {"n_servers": 3}}]})
    with pytest.raises(ConfigError, match=r"unknown field compare\[0\]\.byzsgd; .*scheme .vanilla."):
        parse_config({**raw, "compare": [{"name": "vanilla", "byzsgd": {"dmc": False}}]})
    with pytest.raises(ConfigError, match=r"compare\[0\]\.byzsgd\.gather_period"):
        parse_config({**raw, "compare": [{"name": "byzsgd", "byzsgd": {"gather_period": 0}}]})
    own = parse_config({**raw, "scheme": {"name": "byzsgd", "byzsgd": {"n_ps": 7}}})
    assert own.byzsgd.n_ps == 7  # the run's own scheme: its overrides become the section
