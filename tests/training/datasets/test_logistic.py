"""Synthetic softmax classification: labels, the optimum's metadata, arguments."""

from __future__ import annotations

import pytest

from byzantium.training.datasets import DataError, load_dataset


def test_logistic_labels_and_optimum_metadata():
    ds = load_dataset("logistic", train_size=200, test_size=50, dim=4, num_classes=3, seed=2)
    assert ds.num_classes == 3 and ds.optimum.shape == (3 * 4 + 3,) and ds.l2 == 0.01
    assert set(ds.y_train.tolist()) == {0, 1, 2}
    assert ds.info["optimum_grad_norm"] < 1e-7


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"l2": 0.0}, r"load_dataset\('logistic'\): l2: must be a finite number > 0 \(a unique optimum\), got 0.0"),
        ({"num_classes": 1}, r"num_classes: must be >= 2, got 1"),
        ({"temperature": 0}, r"temperature: must be a finite number > 0, got 0"),
        ({"dim": True}, r"dim: expected an integer, got True"),
        ({"noise": 0.1}, r"unknown field noise; allowed fields: test_size, dim, num_classes, l2, temperature"),
    ],
)
def test_logistic_bad_arguments(kw, match):
    with pytest.raises(DataError, match=match):
        load_dataset("logistic", **kw)
