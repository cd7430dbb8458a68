"""CIFAR-10 from a local folder in the official *python* format (never downloaded), read with a
restricted unpickler."""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .dataset import DataError, Dataset, default_cache_dir
from .preprocess import normalise_channels, train_subset
from .registry import dataset

__all__ = ["Cifar10Params"]

_CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


@dataclass(frozen=True)
class Cifar10Params:
    """CIFAR-10 takes no keywords beyond ``root``, ``train_size`` and ``seed``."""


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays and plain containers.

    The CIFAR-10 python batches are pickles (the data set's official format). Unpickling can run
    arbitrary code, so we refuse every global except numpy's array reconstruction: a tampered
    file fails with ``pickle.UnpicklingError`` instead of executing anything.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"CIFAR-10 batch: refusing to load global {module}.{name}")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as fh:
        d = _ArrayUnpickler(fh, encoding="bytes").load()
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise DataError(f"load_dataset('cifar10'): {path} is not a CIFAR-10 batch (needs keys b'data', b'labels')")
    data = np.asarray(d[b"data"])
    labels = np.asarray(d[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(
            f"load_dataset('cifar10'): {path}: expected b'data' uint8 (N, 3072) and N labels, got "
            f"data {data.dtype} {data.shape} and {len(labels)} labels"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"load_dataset('cifar10'): {path}: labels must be in 0..9")
    return data.reshape(-1, 3, 32, 32), labels


@dataset("cifar10", params=Cifar10Params)
def load_cifar10(p: Cifar10Params, *, root: str | os.PathLike | None, train_size: int | None,
                 seed: int) -> Dataset:
    """CIFAR-10 from a local folder in the official python format (never downloaded).

    ``root`` must hold ``data_batch_1`` .. ``data_batch_5`` and ``test_batch`` (or a
    ``cifar-10-batches-py`` sub-folder holding them): pickled dicts with ``b"data"`` (N x 3072
    uint8, channel-major 32x32) and ``b"labels"``. They are read with a restricted unpickler that
    only rebuilds numpy arrays. Pixels are scaled to [0, 1] and standardised per channel with the
    training statistics; ``train_size`` keeps a seeded random subset (sorted) of the 50,000.
    """
    folder = Path(root).expanduser() if root is not None else default_cache_dir() / "cifar-10-batches-py"
    if not (folder / "test_batch").is_file() and (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    missing = [f for f in _CIFAR_FILES if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"load_dataset('cifar10'): folder {str(folder)!r} must hold the CIFAR-10 python batches "
            f"{list(_CIFAR_FILES)}; missing {missing}. byzantium never downloads data: get "
            "cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, extract it "
            "and pass root=<the cifar-10-batches-py folder>."
        )
    parts = [_read_cifar_batch(folder / f) for f in _CIFAR_FILES[:5]]
    x = np.concatenate([part[0] for part in parts])
    y = np.concatenate([part[1] for part in parts])
    xt, yt = _read_cifar_batch(folder / "test_batch")
    idx = train_subset(np.arange(len(y)), train_size, seed, "cifar10")
    x_tr, x_te = normalise_channels(x[idx].astype(np.float32) / 255.0, xt.astype(np.float32) / 255.0)
    return Dataset(
        name="cifar10",
        x_train=x_tr,
        y_train=torch.from_numpy(y[idx]),
        x_test=x_te,
        y_test=torch.from_numpy(yt),
        num_classes=10,
        input_shape=(3, 32, 32),
        info={"root": str(folder)},
    )
