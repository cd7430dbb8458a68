"""Synthetic linear regression: shapes, determinism, the exact least-squares optimum, arguments."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from byzantium.training.datasets import DataError, load_dataset


def test_linear_optimum_is_least_squares():
    ds = load_dataset("linear", train_size=300, test_size=50, dim=5, seed=1)
    assert ds.task == "regression" and ds.num_classes == 0 and ds.num_outputs == 1
    assert ds.y_train.dtype == torch.float32 and ds.optimum.shape == (6,)
    a = np.hstack([ds.x_train.double().numpy(), np.ones((300, 1))])
    theta, *_ = np.linalg.lstsq(a, ds.y_train.double().numpy(), rcond=None)
    np.testing.assert_allclose(ds.info["optimum_float64"], theta, rtol=1e-9, atol=1e-10)
    again = load_dataset("linear", train_size=300, test_size=50, dim=5, seed=1)
    assert all(torch.equal(getattr(ds, k), getattr(again, k)) for k in ("x_train", "y_train", "x_test"))


def test_linear_noise_free_labels_are_the_linear_function():
    ds = load_dataset("linear", train_size=40, test_size=10, dim=3, noise=0.0, seed=2)
    w, b = ds.info["w_true"], ds.info["b_true"]
    want = ds.x_train.double().numpy() @ w + b
    np.testing.assert_allclose(ds.y_train.numpy(), want, rtol=1e-6, atol=1e-6)  # float32 labels


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"dim": 0}, r"load_dataset\('linear'\): dim: must be >= 1, got 0"),
        ({"dim": 2.5}, r"dim: expected an integer, got 2.5"),
        ({"test_size": 0}, r"test_size: must be >= 1, got 0"),
        ({"noise": -0.1}, r"noise: must be a finite number >= 0, got -0.1"),
        ({"l2": math.nan}, r"l2: must be a finite number >= 0, got nan"),
        ({"classes": 2}, r"unknown field classes; allowed fields: test_size, dim, noise, l2"),
    ],
)
def test_linear_bad_arguments(kw, match):
    with pytest.raises(DataError, match=match):
        load_dataset("linear", **kw)
