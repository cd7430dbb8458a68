"""The data-set registry: names, the arguments every data set shares, a data set added in a test,
and loading a run configuration's data set."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from byzantium.config import parse_config
from byzantium.typed import ConfigError
from byzantium.training.datasets import (
    DATASETS,
    DataError,
    Dataset,
    dataset,
    load_dataset,
    load_run_dataset,
)


def test_registered_names_in_order():
    assert DATASETS.names() == ["mnist1d", "digits", "linear", "logistic", "cifar10"]


@pytest.mark.parametrize(
    "args, match",
    [
        ({"name": "mnist"}, r"name must be one of \('mnist1d', 'digits', 'linear', 'logistic', 'cifar10'\), got name='mnist'"),
        ({"name": 3}, "name must be one of"),
        ({"name": "linear", "train_size": 0}, "train_size must be a positive int or None, got 0"),
        ({"name": "linear", "seed": -1}, "seed must be a non-negative int, got seed=-1"),
    ],
)
def test_shared_argument_errors(args, match):
    with pytest.raises(DataError, match=match):
        load_dataset(**args)


@pytest.fixture
def constant_dataset(monkeypatch):
    """A data set registered for one test (the registry is restored afterwards)."""
    monkeypatch.setattr(DATASETS, "_entries", dict(DATASETS._entries))
    monkeypatch.setattr(DATASETS, "_params", dict(DATASETS._params))

    @dataclass(frozen=True)
    class ConstantParams:
        value: float = 1.0

    @dataset("constant_for_test", params=ConstantParams)
    def load_constant(p, *, root, train_size, seed):
        n = train_size or 4
        x = torch.full((n, 2), p.value)
        y = torch.zeros(n, dtype=torch.int64)
        return Dataset("constant_for_test", x, y, x[:1], y[:1], 2, (2,))

    return load_constant


def test_a_registered_data_set_loads_by_name_with_its_params(constant_dataset):
    ds = load_dataset("constant_for_test", train_size=3, value=2.5)
    assert ds.x_train.shape == (3, 2) and float(ds.x_train[0, 0]) == 2.5
    with pytest.raises(DataError, match=r"unknown field values; allowed fields: value"):
        load_dataset("constant_for_test", values=2.5)
    with pytest.raises(DataError, match=r"value: expected a number, got 'high'"):
        load_dataset("constant_for_test", value="high")
    with pytest.raises(ValueError, match="registered twice"):
        dataset("constant_for_test", params=dict)(lambda *a, **k: None)


def test_load_run_dataset_follows_the_config():
    cfg = parse_config({"seed": 4, "data": {"name": "linear", "train_size": 30,
                                            "params": {"dim": 3, "test_size": 5}}})
    ds = load_run_dataset(cfg)
    want = load_dataset("linear", train_size=30, seed=4, dim=3, test_size=5)
    assert torch.equal(ds.x_train, want.x_train) and torch.equal(ds.y_test, want.y_test)
    bad = parse_config({"data": {"name": "linear", "params": {"dims": 3}}})
    with pytest.raises(DataError, match=r"load_dataset\('linear'\): unknown field dims"):
        load_run_dataset(bad)
    with pytest.raises(ConfigError, match=r"data.name: 'mnist' is not allowed; choose one of: mnist1d, digits"):
        parse_config({"data": {"name": "mnist"}})
