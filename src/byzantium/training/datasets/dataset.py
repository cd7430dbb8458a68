"""The :class:`Dataset` record every loader returns, its error type and the cache folder."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from torch import Tensor

__all__ = ["DataError", "Dataset", "default_cache_dir"]


class DataError(ValueError):
    """Bad argument to a data-set loader or sampler."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Training and test tensors of one data set.

    Features are float32 of shape ``(N, *input_shape)``. Labels are int64 ``(N,)`` for
    classification and float32 ``(N,)`` for regression (``task == "regression"``, where
    ``num_classes == 0``).

    ``optimum`` (synthetic data only) is the flat parameter vector, in
    ``parameters_to_vector`` order, of ``build_model("logreg", dataset)`` that minimises
    ``mean training loss + (l2 / 2) * ||theta||^2`` over *all* parameters (weights and bias); the
    same objective that SGD with ``weight_decay=l2`` optimises with ``loss_fn(dataset)``.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    input_shape: tuple[int, ...]
    task: Literal["classification", "regression"] = "classification"
    optimum: Tensor | None = None
    l2: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_outputs(self) -> int:
        """Width of a model's output layer: the number of classes, or 1 for regression."""
        return self.num_classes if self.task == "classification" else 1

    @property
    def num_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.x_test.shape[0])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={tuple(self.x_train.shape)}, "
            f"test={tuple(self.x_test.shape)}, num_classes={self.num_classes}, task={self.task!r})"
        )


def default_cache_dir() -> Path:
    """``$BYZANTIUM_CACHE`` if set, else ``~/.cache/byzantium``."""
    env = os.environ.get("BYZANTIUM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "byzantium"
