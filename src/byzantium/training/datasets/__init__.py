"""Data sets, one file each, registered by name (:mod:`.registry`). Nothing is ever downloaded.

============  ============  ==================================================================
file          name          what
============  ============  ==================================================================
mnist1d.py    ``mnist1d``   MNIST-1D (Greydanus & Steinbach), generated locally and cached
                            (the default)
digits.py     ``digits``    scikit-learn's bundled 8x8 digits (1797 images), fixed split
linear.py     ``linear``    synthetic regression, exact least-squares optimum
logistic.py   ``logistic``  synthetic classification, optimum of the L2-regularised loss
cifar10.py    ``cifar10``   CIFAR-10 from a local folder in the official python format
============  ============  ==================================================================

``load_dataset(name, root=, train_size=, seed=, **kw)`` loads one; ``kw`` are the fields of the
data set's params dataclass. Adding a data set is one file: a params dataclass and a loader
decorated with ``@dataset(name, params=...)``, imported below.
"""

from __future__ import annotations

# registration, in the order the names are listed
from . import mnist1d, digits, linear, logistic, cifar10  # noqa: F401, I001
from .dataset import DataError, Dataset, default_cache_dir
from .registry import DATASETS, dataset, load_dataset, load_run_dataset

__all__ = [
    "DATASETS",
    "DataError",
    "Dataset",
    "dataset",
    "default_cache_dir",
    "load_dataset",
    "load_run_dataset",
]
