"""Preprocessing shared by the image data sets: a seeded training subset, per-channel scaling."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .dataset import DataError

__all__ = ["train_subset", "normalise_channels"]


def train_subset(idx: np.ndarray, train_size: int | None, seed: int, name: str) -> np.ndarray:
    """``train_size`` of the training indices ``idx`` (all if None), chosen by
    ``numpy.random.default_rng(seed)`` and kept in their original order."""
    if train_size is None:
        return idx
    if train_size > len(idx):
        raise DataError(
            f"load_dataset({name!r}): train_size must be <= {len(idx)} (the training set), got {train_size}"
        )
    pick = np.random.default_rng(seed).permutation(len(idx))[:train_size]
    return idx[np.sort(pick)]


def normalise_channels(x_tr: np.ndarray, x_te: np.ndarray) -> tuple[Tensor, Tensor]:
    """Per-channel standardisation of ``(N, C, H, W)`` arrays with training-set statistics."""
    mean = x_tr.mean(axis=(0, 2, 3), dtype=np.float64)
    std = x_tr.std(axis=(0, 2, 3), dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    shape = (1, -1, 1, 1)
    f = lambda a: torch.from_numpy(((a - mean.reshape(shape)) / std.reshape(shape)).astype(np.float32))
    return f(x_tr), f(x_te)
