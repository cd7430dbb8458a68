"""Fault injection on real jobs: malformed frames, SIGKILL, SIGSTOP, too few workers, stragglers
under first-k."""

from __future__ import annotations

import json
import signal
import time

from byzantium.runtime.distributed.launcher import EXIT_INSUFFICIENT
from byzantium.runtime.distributed.options import RuntimeOptions, parse_fault
from byzantium.training.checkpoint import latest_checkpoint, load_checkpoint
from byzantium.training.results import read_metrics

from .conftest import tiny_cfg


def _events(run):
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]


def test_bad_frames_crashes_and_hangs_are_survived(jobs, tmp_path) -> None:
    """Six workers, median: every kind of bad frame once, one worker SIGKILLs itself, one
    SIGSTOPs itself; the run finishes, each rejection is counted under its reason, the killed
    worker is dead at once, the stopped one evicted after the timeout. Huge but finite values
    (garbage) pass validation and are the aggregator's business."""
    plan = ["0:short@1", "1:length@1", "2:stale@2", "3:stamp@2", "0:nan@3", "1:inf@3",
            "2:sender@4", "4:kill@3", "5:stop@4", "3:garbage@5"]
    cfg = tiny_cfg(workers=6, steps=7, scheme={"name": "robust", "aggregator": "median"})
    opts = RuntimeOptions(evict_timeout=2.0, progress_every=0,
                          faults=tuple(parse_fault(f) for f in plan))
    run = tmp_path / "run"
    job = jobs(cfg, run, opts=opts)
    assert job.wait(timeout=90) == 0
    rcs = job.returncodes()
    assert rcs[5] == -signal.SIGKILL  # worker 4 killed itself
    assert rcs[6] == -signal.SIGKILL  # worker 5 was stopped, then killed by PID at the end
    assert all(rcs[r] == 0 for r in (0, 1, 2, 3, 4)), rcs
    s = json.loads((run / "summary.json").read_text())
    assert s["completed"] and s["steps_completed"] == 7 and s["final_test_accuracy"] > 0.5
    assert s["rejections"] == {"short": 1, "length": 1, "stale": 1, "stamp": 1, "nonfinite": 2,
                               "sender": 1}
    assert s["rejections_by_worker"] == {
        "0": {"short": 1, "nonfinite": 1}, "1": {"length": 1, "nonfinite": 1},
        "2": {"stale": 1, "sender": 1}, "3": {"stamp": 1}}
    assert s["dead_or_evicted"] == {"4": "dead", "5": "evicted"}
    received = [r["received"] for r in read_metrics(run / "metrics.csv")]
    #            step 0  1  2  3  4  5  6
    assert received == [6, 4, 4, 3, 3, 4, 4]
    ev = _events(run)
    dead = [e for e in ev if e["event"] == "dead"]
    evicted = [e for e in ev if e["event"] == "evicted"]
    assert [(e["worker"], e["step"]) for e in dead] == [(4, 3)]
    assert [(e["worker"], e["step"]) for e in evicted] == [(5, 4)]
    stop_step = [e for e in ev if e["event"] == "rejected" and e["step"] == 4]
    assert evicted[0]["time"] - stop_step[0]["time"] >= 1.5  # waited for the timeout, no longer
    assert evicted[0]["time"] - stop_step[0]["time"] < 10


def test_too_few_workers_stops_with_error_and_checkpoint(jobs, tmp_path) -> None:
    """DRACO repetition r=3: killing (kill -9 by PID, from outside) two workers of the same group
    leaves its file one live copy, below the majority: clear error, exit code 3, checkpoint."""
    cfg = tiny_cfg(workers=6, steps=100_000, scheme={"name": "draco_repetition", "s": 1},
                   training={"steps": 100_000, "batch_size": 90, "eval_every": 100_000,
                             "eval_batch_size": 500, "checkpoint_every": 0})
    run = tmp_path / "run"
    job = jobs(cfg, run, opts=RuntimeOptions(progress_every=0))
    end = time.monotonic() + 60
    while time.monotonic() < end and len(read_metrics(run / "metrics.csv")) < 3:
        time.sleep(0.05)
    assert len(read_metrics(run / "metrics.csv")) >= 3
    job.kill(1)  # worker 0: file 0 keeps workers 1, 2 -> still a majority
    job.kill(2)  # worker 1: file 0 keeps worker 2 only
    assert job.wait(timeout=60) == EXIT_INSUFFICIENT
    s = json.loads((run / "summary.json").read_text())
    assert not s["completed"] and "too few workers" in s["error"]
    assert "files [0]" in s["error"] and s["dead_or_evicted"] == {"0": "dead", "1": "dead"}
    ck = latest_checkpoint(run)
    state = load_checkpoint(ck)
    done = len(read_metrics(run / "metrics.csv"))
    assert state["step"] == done and done < 100_000  # the last completed step, not a later one
    assert any("too few workers" in line for line in job.server_lines)

    # every worker back: --resume continues from the checkpoint and completes
    more = tiny_cfg(workers=6, scheme={"name": "draco_repetition", "s": 1},
                    training={"steps": done + 3, "batch_size": 90, "eval_every": 1000,
                              "eval_batch_size": 500, "checkpoint_every": 0})
    again = jobs(more, run, resume=True, opts=RuntimeOptions(progress_every=0))
    assert again.wait(timeout=60) == 0
    s = json.loads((run / "summary.json").read_text())
    assert s["completed"] and s["error"] is None and s["dead_or_evicted"] == {}
    assert [r["step"] for r in read_metrics(run / "metrics.csv")] == list(range(done + 3))
    assert any(f"resuming at step {done}" in line for line in again.server_lines)


def test_first_k_discards_the_slow_workers_late_messages(jobs, tmp_path) -> None:
    """first_k with k=5 of 6 and worker 5 slowed 8x: every step aggregates 5 messages; the slow
    worker's replies arrive after their step closed and are discarded as late, never mixed into a
    newer step (the newest parameters reach it as soon as it answers)."""
    cfg = tiny_cfg(workers=6, steps=30,
                   stragglers={"model": "slow_set", "params": {"workers": [5], "factor": 8.0,
                               "base": {"model": "none", "base_time": 1.0}},
                               "policy": "first_k", "k": 5})
    run = tmp_path / "run"
    job = jobs(cfg, run, opts=RuntimeOptions(progress_every=0, time_scale=0.01))
    assert job.wait(timeout=90) == 0
    s = json.loads((run / "summary.json").read_text())
    assert s["completed"] and s["dead_or_evicted"] == {}
    assert set(s["rejections"]) == {"late"} and s["rejections"]["late"] >= 2
    assert all(r["received"] == 5 for r in read_metrics(run / "metrics.csv"))
    late = [e for e in _events(run) if e["reason"] == "late"]
    assert {e["worker"] for e in late} == {5}
    for e in late:  # a reply to an older step than the one being collected
        assert int(e["detail"].split()[-1]) < e["step"]


def test_wait_all_deadline_goes_on_without_the_slow_worker(jobs, tmp_path) -> None:
    """wait_all with a 0.3 s deadline and worker 3 sleeping 0.8 s per step: each step closes at
    the deadline with the three others, the slow worker's replies are discarded as late."""
    cfg = tiny_cfg(workers=4, steps=6, stragglers={
        "model": "slow_set", "params": {"workers": [3], "factor": 80.0,
                                        "base": {"model": "none", "base_time": 1.0}}})
    run = tmp_path / "run"
    job = jobs(cfg, run, opts=RuntimeOptions(progress_every=0, time_scale=0.01, deadline=0.3))
    t0 = time.monotonic()
    assert job.wait(timeout=60) == 0
    s = json.loads((run / "summary.json").read_text())
    assert s["completed"] and set(s["rejections"]) == {"late"} and s["rejections"]["late"] >= 1
    assert [r["received"] for r in read_metrics(run / "metrics.csv")] == [3] * 6
    deadlines = [e for e in _events(run) if e["event"] == "deadline"]
    assert [e["step"] for e in deadlines] == list(range(6))
    assert all("[3]" in e["detail"] for e in deadlines)
    assert time.monotonic() - t0 < 30


def test_a_frozen_worker_is_waited_for_then_counted(jobs, tmp_path) -> None:
    """Worker 2's process freezes for 2 s at step 2 (SIGSTOP, resumed by a child): wait-for-all
    with a 30 s eviction timeout waits for it, so every step counts all four messages and step 2
    takes the freeze's time (the simulated clock adds the measured wait)."""
    cfg = tiny_cfg(workers=4, steps=5, scheme={"name": "robust", "aggregator": "median"})
    opts = RuntimeOptions(evict_timeout=30.0, progress_every=0, faults=(parse_fault("2:freeze@2"),))
    run = tmp_path / "run"
    job = jobs(cfg, run, opts=opts)
    assert job.wait(timeout=90) == 0
    assert all(c == 0 for c in job.returncodes().values())
    s = json.loads((run / "summary.json").read_text())
    assert s["completed"] and s["dead_or_evicted"] == {} and s["rejections"] == {}
    rows = read_metrics(run / "metrics.csv")
    assert [r["received"] for r in rows] == [4] * 5
    waits = [b["sim_time"] - a["sim_time"] for a, b in zip([{"sim_time": 0.0}, *rows], rows)]
    assert waits[2] >= 1.5 and max(waits[1:2] + waits[3:]) < 1.5  # step 0 may include start-up
