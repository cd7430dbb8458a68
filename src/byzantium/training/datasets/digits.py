"""scikit-learn's bundled 8x8 digits (1797 images, 10 classes), a fixed train/test split."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ...typed import ConfigError
from .dataset import Dataset
from .preprocess import normalise_channels, train_subset
from .registry import dataset

__all__ = ["DigitsParams"]


@dataclass(frozen=True)
class DigitsParams:
    test_fraction: float = 0.2
    """Share of the 1797 images held out as the test set, in (0, 1)."""

    def __post_init__(self) -> None:
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"test_fraction: must be in (0, 1), got {self.test_fraction!r}")


@dataset("digits", params=DigitsParams)
def load_digits(p: DigitsParams, *, root: Any, train_size: int | None, seed: int) -> Dataset:
    """scikit-learn's bundled digits: 1797 8x8 images, 10 classes, pixel values 0..16.

    The train/test split is fixed (a permutation from ``numpy.random.default_rng(0)``, the last
    ``round(test_fraction * 1797)`` as test), so every seed evaluates on the same test set; ``seed``
    only chooses the ``train_size`` subset. Normalised with the training set's mean and std.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = np.asarray(bunch.images, dtype=np.float32)[:, None, :, :]  # (N, 1, 8, 8)
    y = np.asarray(bunch.target, dtype=np.int64)
    perm = np.random.default_rng(0).permutation(len(y))
    n_test = int(round(p.test_fraction * len(y)))
    tr, te = perm[: len(y) - n_test], perm[len(y) - n_test :]
    tr = train_subset(tr, train_size, seed, "digits")
    x_tr, x_te = normalise_channels(x[tr], x[te])
    return Dataset(
        name="digits",
        x_train=x_tr,
        y_train=torch.from_numpy(y[tr]),
        x_test=x_te,
        y_test=torch.from_numpy(y[te]),
        num_classes=10,
        input_shape=(1, 8, 8),
    )
