"""The data-set registry: each data set registers a loader and its params dataclass.

``load_dataset(name, root=, train_size=, seed=, **kw)`` checks the arguments every data set shares,
builds the data set's params dataclass from ``kw`` with :func:`byzantium.typed.from_mapping`
(errors name the data set, the field, the value and what is allowed) and calls the loader.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from ...registry import Registry
from ...typed import ConfigError
from .dataset import DataError, Dataset

__all__ = ["DATASETS", "Loader", "dataset", "load_dataset", "load_run_dataset"]

Loader = Callable[..., Dataset]
"""``load(params, *, root, train_size, seed) -> Dataset``."""

DATASETS: Registry[Loader] = Registry("dataset", error=DataError)
"""Loaders by name, each with its params dataclass."""


def dataset(name: str, *, params: type) -> Callable[[Loader], Loader]:
    """Register ``load(params, *, root, train_size, seed)`` as data set ``name`` with the
    dataclass of its extra keywords."""
    return DATASETS.register(name, params=params)


def load_dataset(
    name: str = "mnist1d",
    *,
    root: str | os.PathLike | None = None,
    train_size: int | None = None,
    seed: int = 0,
    **kw: Any,
) -> Dataset:
    """Load (or generate) a data set by name (``DATASETS.names()``; see :mod:`byzantium.training.datasets`).

    ``root``: the cache folder for generated data (``mnist1d``; default
    :func:`default_cache_dir`), or the folder holding the CIFAR-10 batches (``cifar10``; default
    ``<cache dir>/cifar-10-batches-py``). ``train_size`` keeps that many training examples (for
    ``mnist1d``, ``linear`` and ``logistic`` it is the number generated). ``seed`` drives every
    random choice; the same arguments give the same tensors bit for bit. The other keywords are
    the fields of the data set's params dataclass (its module documents them).
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise DataError(f"load_dataset: name must be one of {tuple(DATASETS.names())}, got name={name!r}")
    if train_size is not None and (not isinstance(train_size, int) or train_size < 1):
        raise DataError(f"load_dataset: train_size must be a positive int or None, got {train_size!r}")
    if not isinstance(seed, int) or seed < 0:
        raise DataError(f"load_dataset: seed must be a non-negative int, got seed={seed!r}")
    try:
        params = DATASETS.params(name, kw, "")
    except ConfigError as e:
        raise DataError(f"load_dataset({name!r}): {e}") from None
    return DATASETS[name](params, root=root, train_size=train_size, seed=seed)


def load_run_dataset(cfg: Any) -> Dataset:
    """The data set of a run configuration (``cfg.data`` and ``cfg.seed``), as every runtime and
    rank loads it: the same config gives the same tensors on every machine."""
    d = cfg.data
    return load_dataset(d.name, root=d.root, train_size=d.train_size, seed=cfg.seed, **d.params)
