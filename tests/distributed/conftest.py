"""Fixtures for the distributed runtime's tests: tiny configs and jobs that are always torn down by
PID (also when a test fails). Every job forks its ranks from this process's forkserver (started by
the first job, shared by the later ones); it exits with the test process."""

from __future__ import annotations

import pytest

from byzantium.config import parse_config
from byzantium.runtime.distributed.launcher import Launch


def tiny_cfg(workers: int = 6, steps: int = 5, **over):
    """Synthetic logistic data, a linear model: a step costs well under a millisecond."""
    raw = {
        "name": "t",
        "seed": 0,
        "workers": workers,
        "data": {"name": "logistic", "train_size": 600, "validation_size": 60,
                 "params": {"dim": 10, "num_classes": 3}},
        "model": {"name": "logreg"},
        "optim": {"lr": 0.1, "momentum": 0.9, "schedule": "constant"},
        "training": {"steps": steps, "batch_size": 90, "eval_every": steps,
                     "eval_batch_size": 500, "checkpoint_every": steps},
        "scheme": {"name": "vanilla"},
    }
    raw.update(over)
    return parse_config(raw)


@pytest.fixture
def make_cfg():
    return tiny_cfg


@pytest.fixture
def jobs():
    """``jobs(cfg, run_dir, **kw) -> Launch`` (started); every job is closed (all its ranks killed
    by PID) when the test ends, passed or failed."""
    started: list[Launch] = []

    def start(cfg, run_dir, **kw):
        job = Launch(cfg, run_dir, **kw)
        started.append(job)
        return job.start()

    yield start
    for job in started:
        job.close()
        assert all(rc is not None for rc in job.returncodes().values())
