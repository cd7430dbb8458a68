"""Distributed ByzSGD: n_ps server ranks and n_w worker ranks on loopback, no trusted component.

Each job is a few seconds of 8-12 processes on a linear model; the simulator runs the same config
for comparison."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from byzantium.runtime.distributed import LaunchError, launch
from byzantium.runtime.distributed.byzsgd import Layout, pairs
from byzantium.runtime.distributed.options import RuntimeOptions, parse_fault
from byzantium.runtime.byzsgd_sim import build_byzsgd_cluster
from byzantium.training.datasets import load_dataset
from byzantium.runtime.run import run_training
from byzantium.training.results import read_metrics

from .conftest import tiny_cfg


def byz_cfg(steps: int = 20, workers: int = 7, **byz):
    over = dict(byz)
    attack = over.pop("attack", {"name": "reversed", "q": 2})
    optim = over.pop("optim", {"lr": 0.1, "momentum": 0.0, "schedule": "constant"})
    return tiny_cfg(workers=workers, steps=steps, scheme={"name": "byzsgd"}, attack=attack, optim=optim,
                    training={"steps": steps, "batch_size": 70, "eval_every": 5, "eval_batch_size": 500},
                    byzsgd={"n_ps": 5, "f_ps": 1, "gather_period": 3, **over})


@pytest.fixture(scope="module")
def data():
    return load_dataset("logistic", train_size=600, seed=0, dim=10, num_classes=3)


OPTS = RuntimeOptions(progress_every=0, evict_timeout=30.0)


def _snapshot(run, s: int, step: int) -> torch.Tensor:
    sn = torch.load(run / "servers" / f"ps{s}" / "snapshots.pt", weights_only=True)
    return sn["models"][sn["steps"].index(step)]


def _rank_summaries(run, n_ps: int, n_w: int) -> list[dict]:
    """Every server's ``summary.json``, then every worker's ``w<j>.json``."""
    return ([json.loads((run / "servers" / f"ps{s}" / "summary.json").read_text()) for s in range(n_ps)]
            + [json.loads((run / "workers" / f"w{j}.json").read_text()) for j in range(n_w)])


def test_layout_and_pairs() -> None:
    lay = Layout(3, 4)
    assert lay.world == 7 and lay.servers == [0, 1, 2] and lay.workers == [3, 4, 5, 6]
    p = pairs(lay)
    assert len(p) == 3 * 4 + 3 and len(set(p)) == len(p)
    assert p[:4] == [(0, 3), (0, 4), (0, 5), (0, 6)] and p[-3:] == [(0, 1), (0, 2), (1, 2)]
    f = parse_fault("ps2:kill@5")
    assert (f.role, f.worker, f.kind, f.steps) == ("server", 2, "kill", (5,)) and f.spec() == "ps2:kill@5"
    with pytest.raises(ValueError, match="server fault kind must be one of kill, stop"):
        parse_fault("ps2:nan@5")


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_no_fault_run_equals_the_simulator(momentum, data, tmp_path) -> None:
    """f_ps = f_w = 0 and quorums of everyone: every party sees every message, so the real run is
    the lock-step simulation (up to the last bit of the per-file gradient pass)."""
    cfg = byz_cfg(steps=8, workers=4, n_ps=3, f_ps=0, attack={"name": "none"},
                  optim={"lr": 0.1, "momentum": momentum, "weight_decay": 1e-3, "schedule": "constant"})
    summary = launch(cfg, tmp_path / "d", opts=OPTS, timeout=120)
    assert summary["completed"] and summary["servers_completed"] == [0, 1, 2]
    sim = build_byzsgd_cluster(cfg, data, scheme_cfg=cfg.scheme)
    sim.run(8)
    for s in range(3):
        torch.testing.assert_close(_snapshot(tmp_path / "d", s, 7), sim.models[s], rtol=1e-5, atol=1e-6)
    # 3 x 4 pulls and pushes per step, 3 x 2 gather models every T = 3 steps (2 gathers in 8 steps)
    # every frame is sent, replaced in its latest-only outbox (rare) or undelivered (its peer had
    # already finished: the last gather's extra models)
    fr = summary["frames_per_step"]
    sent = round((fr["pull"] + fr["push"] + fr["gather"]) * 8)
    assert sent + summary["frames_replaced"] + summary["frames_undelivered"] == 2 * 12 * 8 + 6 * 2


def test_async_under_server_and_worker_attacks(data, tmp_path) -> None:
    """n_ps = 5 with one Byzantine server sending -100 theta, n_w = 7 with two reversed-gradient
    workers: the run completes, matches the simulator's accuracy and counts the paper's
    messages."""
    steps = 30
    cfg = byz_cfg(steps=steps, server_attack="reverse")
    summary = launch(cfg, tmp_path / "d", opts=OPTS, timeout=120)
    assert summary["completed"] and summary["correct_servers"] == [0, 1, 2, 3]
    assert summary["servers_completed"] == [0, 1, 2, 3, 4] and summary["errors"] == {}
    rows = read_metrics(tmp_path / "d" / "metrics.csv")
    assert [r["step"] for r in rows] == list(range(steps))
    assert all(r["received"] == 5 for r in rows)  # q_w = n_w - f_w gradients counted
    sim = run_training(cfg, tmp_path / "s", progress=False, dataset=data)
    assert summary["final_test_accuracy"] > 0.6
    assert summary["final_test_accuracy"] == pytest.approx(sim["final_test_accuracy"], abs=0.05)
    fr = summary["frames_per_step"]
    sent = round((fr["pull"] + fr["push"] + fr["gather"]) * steps)
    # per step run: 7 pulls per server, 5 pushes per worker; 4 models per server and gather. A
    # party that fell behind on this loaded machine skips the steps its peers finished without it
    # (then it sends less), which is rare: count what each one ran
    ranks = _rank_summaries(tmp_path / "d", n_ps=5, n_w=7)
    servers, workers = ranks[:5], ranks[5:]
    expected = (sum(7 * s["steps_run"] + 4 * s["gathers_run"] for s in servers)
                + sum(5 * w["steps_computed"] for w in workers))
    assert sum(s["steps_skipped"] for s in servers) <= 3
    assert sum(s["steps_run"] for s in servers) >= 5 * steps - 3
    assert sent + summary["frames_replaced"] + summary["frames_undelivered"] == expected
    # only frames of the last step can miss their peer (it finished and exited first)
    assert summary["frames_undelivered"] <= 35 + 35 + 5 * 4
    assert summary["max_drift"] < 1.0  # DMC keeps the correct servers together
    assert (tmp_path / "d" / "accuracy.png").exists() and (tmp_path / "d" / "drift.png").exists()


def test_a_killed_server_does_not_stop_the_others(tmp_path) -> None:
    opts = RuntimeOptions(progress_every=0, evict_timeout=30.0, faults=(parse_fault("ps1:kill@6"),))
    summary = launch(byz_cfg(steps=20), tmp_path / "d", opts=opts, timeout=120)
    assert summary["completed"] and summary["steps_completed"] == 20
    assert summary["servers_completed"] == [0, 2, 3, 4] and summary["servers_without_summary"] == [1]
    assert summary["final_test_accuracy"] > 0.6
    lost = json.loads((tmp_path / "d" / "servers" / "ps0" / "summary.json").read_text())["lost"]
    assert list(lost) == ["1"]


def test_a_server_that_froze_catches_up(tmp_path) -> None:
    """Server 2's whole process stops for 2 s at step 3 (receivers included): the others go on
    with q_ps = 4 models, the workers' outboxes to it keep only their newest gradient, and when
    it wakes it joins the workers' newest step instead of waiting forever for step 3's. Then
    server 1 crashes: the run needs server 2 again and still finishes. Worker 3 freezes at step
    20 and rejoins the same way."""
    faults = (parse_fault("ps2:freeze@3"), parse_fault("ps1:kill@12"), parse_fault("3:freeze@20"))
    opts = RuntimeOptions(progress_every=0, evict_timeout=30.0, faults=faults)
    cfg = byz_cfg(steps=60)
    summary = launch(cfg, tmp_path / "d", opts=opts, timeout=150)
    assert summary["completed"] and summary["servers_completed"] == [0, 2, 3, 4]
    froze = json.loads((tmp_path / "d" / "servers" / "ps2" / "summary.json").read_text())
    assert froze["completed"] and froze["steps_skipped"] > 0
    assert froze["steps_run"] + froze["steps_skipped"] == 60
    assert summary["steps_skipped"] == {"2": froze["steps_skipped"]} and summary["steps_completed"] == 60
    events = [json.loads(x) for x in (tmp_path / "d" / "servers" / "ps2" / "events.jsonl").read_text().splitlines()]
    assert any(e["event"] == "skipped" for e in events)
    assert summary["final_test_accuracy"] > 0.6 and summary["max_drift"] < 1.0
    # worker 3 froze at step 20: the servers went on with q_w = 5 of the 6 others; it rejoined later
    w3 = json.loads((tmp_path / "d" / "workers" / "w3.json").read_text())
    assert w3["filter"]["skipped_steps"] > 0 and w3["error"] is None and w3["last_step"] == 59
    # the frozen worker's skips reach the merged summary (a loaded machine may let another
    # worker fall a step behind too: only worker 3's count is certain)
    assert summary["worker_steps_skipped"]["3"] == w3["filter"]["skipped_steps"]


def test_too_many_dead_servers_is_a_clear_error(tmp_path) -> None:
    """Two crashed servers of five with f_ps = 1: no quorum of q_ps = 4 models is reachable."""
    faults = (parse_fault("ps1:kill@4"), parse_fault("ps2:kill@4"))
    opts = RuntimeOptions(progress_every=0, evict_timeout=30.0, faults=faults)
    with pytest.raises(LaunchError, match="cannot reach the quorum|cannot give the quorum") as e:
        launch(byz_cfg(steps=20), tmp_path / "d", opts=opts, timeout=120)
    assert e.value.returncode == 3
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert not summary["completed"] and summary["errors"]


def test_sync_variant_filters_the_byzantine_server(data, tmp_path) -> None:
    """Synchronous ByzSGD: each worker pulls one server per normal step; the -100 theta models of
    the Byzantine server fail the outliers filter and fall back to a full pull."""
    steps = 20
    cfg = byz_cfg(steps=steps, variant="sync", server_attack="reverse")
    opts = RuntimeOptions(progress_every=0, evict_timeout=30.0, deadline=20.0)
    summary = launch(cfg, tmp_path / "d", opts=opts, timeout=120)
    assert summary["completed"] and summary["servers_completed"] == [0, 1, 2, 3, 4]
    T = summary["gather_period"]
    for j, fl in summary["worker_filters"].items():
        byz_pulls = sum(1 for t in range(1, steps) if t % T and (int(j) + t) % 5 == 4)
        # every Byzantine pull the worker made is rejected; a worker that fell behind on a loaded
        # machine skips steps (and their pulls), so count only the steps it computed
        assert fl["rejected_outliers"] >= byz_pulls - fl["skipped_steps"] and fl["rejected_outliers"] > 0
        assert fl["fallbacks"] == fl["rejected"] + fl["timeouts"]
    assert summary["frames_per_step"]["request"] > 0
    # fewer pulls than the asynchronous variant's n_ps * n_w = 35 per step
    assert summary["frames_per_step"]["pull"] < 35
    sim = run_training(cfg, tmp_path / "s", progress=False, dataset=data)
    assert summary["final_test_accuracy"] == pytest.approx(sim["final_test_accuracy"], abs=0.05)


def test_sync_waits_follow_the_bounded_delay() -> None:
    """Without --deadline the synchronous variant assumes Δ = 1 s (the eviction timeout, 30 s, made
    every silent pull a 30 s wait, and servers gave up on workers still in their fallback); the
    wait for the first n - f messages always covers the 3 Δ by which correct parties drift apart."""
    from byzantium.runtime.distributed.options import SYNC_DEFAULT_DEADLINE

    assert RuntimeOptions().sync_delta() == SYNC_DEFAULT_DEADLINE == 1.0
    assert RuntimeOptions(evict_timeout=30.0).sync_patience() == 33.0
    slow = RuntimeOptions(evict_timeout=30.0, deadline=20.0)
    assert slow.sync_delta() == 20.0 and slow.sync_patience() == 90.0 > 3 * 20.0


def test_sync_variant_survives_a_silent_server(tmp_path) -> None:
    """A silent Byzantine server under the synchronous variant: the workers it should serve time
    out after the deadline and fall back to the other servers; gathers go on without it."""
    cfg = byz_cfg(steps=8, variant="sync", server_attack="silent")
    opts = RuntimeOptions(progress_every=0, evict_timeout=30.0, deadline=0.5)
    summary = launch(cfg, tmp_path / "d", opts=opts, timeout=120)
    assert summary["completed"] and summary["servers_completed"] == [0, 1, 2, 3, 4]
    assert summary["final_test_accuracy"] > 0.5
    assert sum(fl["timeouts"] for fl in summary["worker_filters"].values()) > 0
    silent = json.loads((tmp_path / "d" / "servers" / "ps4" / "summary.json").read_text())
    assert silent["byzantine"] and silent["frames_sent"] == {}


def test_resume_after_every_server_crashed(tmp_path) -> None:
    """Every server is killed at step 6 (checkpoints at 4); ``--resume`` continues from step 4
    and ends with the uninterrupted run's models (full quorums: the run is deterministic)."""
    cfg = byz_cfg(steps=12, workers=4, n_ps=3, f_ps=0, attack={"name": "none"},
                  optim={"lr": 0.1, "momentum": 0.9, "schedule": "constant"})
    cfg = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, checkpoint_every=4))
    full = launch(cfg, tmp_path / "full", opts=OPTS, timeout=120)
    assert full["completed"] and full["resumed_at"] is None
    kill = RuntimeOptions(progress_every=0, evict_timeout=30.0,
                          faults=tuple(parse_fault(f"ps{s}:kill@6") for s in range(3)))
    cut = launch(cfg, tmp_path / "cut", opts=kill, timeout=120)
    assert not cut["completed"] and cut["steps_completed"] == 6
    res = launch(cfg, tmp_path / "cut", opts=OPTS, timeout=120, resume=True)
    assert res["completed"] and res["resumed_at"] == 4 and res["steps_completed"] == 12
    rows = read_metrics(tmp_path / "cut" / "metrics.csv")
    assert [r["step"] for r in rows] == list(range(12))
    for s in range(3):
        assert torch.equal(_snapshot(tmp_path / "cut", s, 11), _snapshot(tmp_path / "full", s, 11))
    assert res["final_test_accuracy"] == full["final_test_accuracy"]
