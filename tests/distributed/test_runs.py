"""Real jobs on loopback: 1 server + 6 worker processes per scheme (ByzShield: 9, the smallest
Ramanujan assignment with odd r), each compared with the simulator on the same config; the
command line in exec mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from byzantium.config import to_dict
from byzantium.runtime.distributed.options import RuntimeOptions
from byzantium.training.checkpoint import latest_checkpoint, load_checkpoint
from byzantium.training.datasets import load_dataset
from byzantium.runtime.run import run_training
from byzantium.training.results import read_metrics

from .conftest import tiny_cfg

SCHEMES = [
    ({"name": "vanilla"}, 6, None),
    ({"name": "robust", "aggregator": "median"}, 6, {"name": "alie", "q": 1, "params": {"z": 2.0}}),
    ({"name": "draco_repetition", "s": 1}, 6, {"name": "reversed", "q": 1}),
    ({"name": "draco_cyclic", "s": 1}, 6, {"name": "alie", "q": 1, "params": {"z": 2.0}}),
    ({"name": "detox", "r": 3, "aggregator": "median"}, 6, {"name": "label_flip", "q": 1}),
    ({"name": "byzshield", "assignment": "ramanujan", "m": 3, "s": 3, "aggregator": "median"}, 9,
     {"name": "alie", "q": 2, "params": {"z": 2.0}}),
    ({"name": "dstar", "k": 6, "lam": 3.0}, 6, {"name": "reversed", "q": 1}),
]

# Equivalence tolerance. Each worker computes the gradients of its own l files in one fused pass,
# the simulator those of all F files in one pass: the pass scales the summed loss by its number
# of files and BLAS blocks by shape, so a per-file gradient can differ in the last bit (measured:
# bit-identical for ByzShield K=9, <= 1.2e-7 relative after 5 steps for the others).
RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def data():
    return load_dataset("logistic", train_size=600, seed=0, dim=10, num_classes=3)


def _final(run_dir: Path) -> torch.Tensor:
    state = load_checkpoint(latest_checkpoint(run_dir))["model"]
    return torch.cat([v.flatten() for v in state.values()])


@pytest.mark.parametrize("scheme, K, attack", SCHEMES, ids=[s["name"] for s, _, _ in SCHEMES])
def test_each_scheme_runs_and_matches_the_simulator(scheme, K, attack, jobs, data, tmp_path) -> None:
    over = {"scheme": scheme, **({"attack": attack} if attack else {})}
    cfg = tiny_cfg(workers=K, steps=5, **over)
    job = jobs(cfg, tmp_path / "dist", opts=RuntimeOptions(progress_every=0))
    assert len(job.pids) == K + 1 and len(set(job.pids.values())) == K + 1
    assert job.wait(timeout=90) == 0
    assert all(rc == 0 for rc in job.returncodes().values()), job.returncodes()
    run = tmp_path / "dist"
    for f in ("config.yaml", "metrics.csv", "summary.json", "accuracy.png"):
        assert (run / f).exists(), f
    summary = json.loads((run / "summary.json").read_text())
    assert summary["completed"] and summary["steps_completed"] == 5
    assert summary["rejections"] == {} and summary["dead_or_evicted"] == {}
    assert summary["runtime"] == "distributed" and summary["q"] == (attack or {}).get("q", 0)
    rows = read_metrics(run / "metrics.csv")
    assert [r["step"] for r in rows] == list(range(5)) and all(r["received"] == K for r in rows)

    ref = run_training(cfg, tmp_path / "sim", progress=False, dataset=data)
    want = torch.nn.utils.parameters_to_vector(ref["model"].parameters()).detach()
    torch.testing.assert_close(_final(run), want, rtol=RTOL, atol=ATOL)
    assert summary["final_test_accuracy"] == pytest.approx(ref["final_test_accuracy"], abs=0.005)
    sim_rows = read_metrics(tmp_path / "sim" / "metrics.csv")
    for key in ("distorted_files", "dropped_files", "byzantine_accepted"):  # honest replicas
        assert [r[key] for r in rows] == [r[key] for r in sim_rows], key      # voted equal


def test_command_line_exec_mode(tmp_path) -> None:
    """``python -m byzantium.runtime.distributed launch`` with a fresh interpreter per rank (the
    way ranks started by hand run)."""
    cfg = tiny_cfg(workers=1, steps=3)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(
        [sys.executable, "-m", "byzantium.runtime.distributed", "launch", str(path),
         "--workers", "1", "--out", str(tmp_path / "run"), "--start", "exec",
         "--progress-every", "1", "--timeout", "120"],
        capture_output=True, text=True, env=env, timeout=150,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "step 3/3" in out.stdout and "done: final test accuracy" in out.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["completed"] and summary["workers"] == 1
    logs = sorted(p.name for p in (tmp_path / "run" / "logs").iterdir())
    assert logs == ["rank_config.yaml", "server.log", "worker_0.log"]
