"""scikit-learn digits: fixed split, normalisation, seeded training subsets, arguments."""

from __future__ import annotations

import pytest
import torch

from byzantium.training.datasets import DataError, load_dataset


def _same(a, b) -> bool:
    return all(
        torch.equal(getattr(a, k), getattr(b, k)) for k in ("x_train", "y_train", "x_test", "y_test")
    )


def test_digits_split_and_normalisation():
    a = load_dataset("digits")
    assert a.x_train.shape == (1438, 1, 8, 8) and a.x_test.shape == (359, 1, 8, 8)
    assert a.x_train.dtype == torch.float32 and a.y_test.dtype == torch.int64
    assert abs(float(a.x_train.mean())) < 1e-5 and abs(float(a.x_train.std()) - 1) < 1e-3
    b = load_dataset("digits")
    assert _same(a, b)
    s1 = load_dataset("digits", train_size=100, seed=1)
    s2 = load_dataset("digits", train_size=100, seed=2)
    assert s1.x_train.shape[0] == 100 and not torch.equal(s1.y_train, s2.y_train)
    assert torch.equal(s1.y_test, a.y_test)  # the test set does not depend on the seed
    assert load_dataset("digits", test_fraction=0.5).x_test.shape[0] == 898  # round(0.5 * 1797)


def test_digits_bad_arguments():
    with pytest.raises(DataError, match="train_size must be <= 1438"):
        load_dataset("digits", train_size=5000)
    with pytest.raises(DataError, match=r"load_dataset\('digits'\): unknown field dim; allowed fields: test_fraction"):
        load_dataset("digits", dim=3)
    with pytest.raises(DataError, match=r"test_fraction: must be in \(0, 1\), got 1.5"):
        load_dataset("digits", test_fraction=1.5)
    with pytest.raises(DataError, match=r"test_fraction: expected a number, got 'half'"):
        load_dataset("digits", test_fraction="half")
