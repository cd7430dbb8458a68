from __future__ import annotations

import pytest

from byzantium.config import parse_config
from byzantium.training.datasets import load_dataset


@pytest.fixture(scope="session")
def logistic_data():
    return load_dataset("logistic", train_size=600, seed=0, dim=10, num_classes=3)


def _make_cfg(**over):
    """A tiny, fast configuration on synthetic logistic data with a linear model."""
    raw = {
        "name": "t",
        "seed": 0,
        "workers": 9,
        "data": {"name": "logistic", "train_size": 600, "validation_size": 60,
                 "params": {"dim": 10, "num_classes": 3}},
        "model": {"name": "logreg"},
        "optim": {"lr": 0.1, "momentum": 0.9, "schedule": "constant"},
        "training": {"steps": 6, "batch_size": 90, "eval_every": 3, "eval_batch_size": 500},
    }
    for key, value in over.items():
        node = raw
        parts = key.split("__")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return parse_config(raw)


@pytest.fixture
def make_cfg():
    return _make_cfg
