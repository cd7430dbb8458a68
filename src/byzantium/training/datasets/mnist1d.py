"""MNIST-1D (Greydanus & Steinbach): 10 classes, signals of length 40, generated locally with the
``mnist1d`` package (never its download path) and cached as ``.npz`` keyed by the generator
arguments."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...typed import ConfigError, convert
from .dataset import DataError, Dataset, default_cache_dir
from .registry import dataset

__all__ = ["Mnist1dParams"]

_SET_ELSEWHERE = ("num_samples", "train_split", "seed", "url")
"""Generator arguments that ``train_size``, ``test_size`` and ``seed`` decide."""


@dataclass(frozen=True)
class Mnist1dParams:
    """``test_size`` examples in the test set; ``cache`` the generated arrays under ``root``;
    every other keyword is a field of ``mnist1d.data.get_dataset_args()`` (e.g.
    ``iid_noise_scale``), checked when the data are generated (importing the package costs
    seconds, a cached load does not)."""

    test_size: int = 1000
    cache: bool = True
    generator_args: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.test_size < 1:
            raise ConfigError(f"test_size: must be >= 1, got {self.test_size!r}")
        for bad in _SET_ELSEWHERE:
            if bad in self.generator_args:
                raise ConfigError(f"set {bad!r} through train_size/test_size/seed, not as a keyword")

    @classmethod
    def __from_mapping__(cls, raw: dict, path: str) -> "Mnist1dParams":
        hints = typing.get_type_hints(cls)
        own = {k: convert(raw[k], hints[k], f"{path}.{k}" if path else k)
               for k in ("test_size", "cache") if k in raw}
        return cls(**own, generator_args={k: v for k, v in raw.items() if k not in own})


@dataset("mnist1d", params=Mnist1dParams)
def load_mnist1d(p: Mnist1dParams, *, root: str | os.PathLike | None, train_size: int | None,
                 seed: int) -> Dataset:
    """MNIST-1D (Greydanus & Steinbach, 2020/2024).

    The generator draws ``10 * ceil((train + test) / 10)`` samples (it makes the same number per
    class), shuffles them and splits: the first ``train_size`` (default 4000) are the training
    set, the next ``test_size`` the test set. ``make_dataset`` seeds numpy's *global* RNG; we save
    and restore that state around the call. Features are standardised by the package itself
    (global mean 0, std 1). With ``seed=42`` and the default sizes (4000 / 1000) the arrays equal
    the package's reference data set (``make_dataset(get_dataset_args())``, cast to float32); the
    default ``seed=0`` gives a fresh draw of the same distribution.
    """
    train_size = 4000 if train_size is None else train_size
    test_size = p.test_size
    per_class = math.ceil((train_size + test_size) / 10)
    num_samples = 10 * per_class
    args: dict[str, Any] = dict(p.generator_args)
    # split_ix = int(num_samples * train_split) must equal train_size exactly: aim mid-interval.
    args.update(num_samples=num_samples, train_split=(train_size + 0.5) / num_samples, seed=seed)
    from importlib.metadata import version

    key_src = json.dumps({"mnist1d": version("mnist1d"), **args}, sort_keys=True, default=str)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
    cache_dir = Path(root).expanduser() if root is not None else default_cache_dir()
    path = cache_dir / f"mnist1d-{key}.npz"

    arrays = None
    if p.cache and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("x", "y", "x_test", "y_test")}
    if arrays is None:
        arrays = _generate_mnist1d(args)
        if p.cache:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, **arrays)
            os.replace(tmp, path)  # atomic: concurrent runs never see a partial file
    x, y = arrays["x"][:train_size], arrays["y"][:train_size]
    xt, yt = arrays["x_test"][:test_size], arrays["y_test"][:test_size]
    return Dataset(
        name="mnist1d",
        x_train=torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        y_train=torch.from_numpy(y.astype(np.int64)),
        x_test=torch.from_numpy(np.ascontiguousarray(xt, dtype=np.float32)),
        y_test=torch.from_numpy(yt.astype(np.int64)),
        num_classes=10,
        input_shape=(int(x.shape[1]),),
        info={"generator_args": args, "cache_file": str(path) if p.cache else None},
    )


def _generate_mnist1d(args: dict[str, Any]) -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    full = get_dataset_args(as_dict=True)
    unknown = sorted(set(args) - set(full))
    if unknown:
        raise DataError(
            f"load_dataset('mnist1d'): unknown generator argument(s) {unknown}; allowed: {sorted(full)}"
        )
    full.update(args)

    class _Args:  # mnist1d reads attributes
        def __init__(self, d: dict[str, Any]) -> None:
            self.__dict__.update(d)

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(_Args(full))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {
        "x": np.asarray(d["x"], dtype=np.float32),
        "y": np.asarray(d["y"], dtype=np.int64),
        "x_test": np.asarray(d["x_test"], dtype=np.float32),
        "y_test": np.asarray(d["y_test"], dtype=np.int64),
    }
