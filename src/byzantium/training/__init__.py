"""Training: data sets and file splits, models, per-file gradients (the step loop lives beside)."""

from .datasets import DATASETS, DataError, Dataset, default_cache_dir, load_dataset
from .models import MODELS, build_model, evaluate, loss_fn, update_batchnorm_stats
from .pergrad import (
    METHODS,
    choose_method,
    flat_grad,
    flat_params,
    fused_unsupported_reason,
    num_params,
    per_file_gradients,
    set_flat_params,
)
from .split import FileSampler, gather_files, label_skew

__all__ = [
    "DATASETS",
    "DataError",
    "Dataset",
    "FileSampler",
    "default_cache_dir",
    "gather_files",
    "label_skew",
    "load_dataset",
    "MODELS",
    "build_model",
    "evaluate",
    "loss_fn",
    "update_batchnorm_stats",
    "METHODS",
    "choose_method",
    "flat_grad",
    "flat_params",
    "fused_unsupported_reason",
    "num_params",
    "per_file_gradients",
    "set_flat_params",
]
