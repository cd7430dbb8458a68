"""Synthetic linear regression whose least-squares optimum for the ``logreg`` model is known in
closed form (for exactness tests)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ...typed import ConfigError
from .dataset import Dataset
from .registry import dataset

__all__ = ["LinearParams"]


@dataclass(frozen=True)
class LinearParams:
    test_size: int = 200
    dim: int = 20
    noise: float = 0.1
    """Standard deviation of the label noise."""
    l2: float = 0.0
    """The L2 coefficient of the objective whose optimum is returned."""

    def __post_init__(self) -> None:
        for name in ("test_size", "dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)!r}")
        for name in ("noise", "l2"):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                raise ConfigError(f"{name}: must be a finite number >= 0, got {v!r}")


@dataset("linear", params=LinearParams)
def load_linear(p: LinearParams, *, root: Any, train_size: int | None, seed: int) -> Dataset:
    r"""Linear regression ``y = X w* + b* + noise`` with its exact least-squares optimum.

    ``X ~ N(0, I_dim)``, ``w* ~ N(0, I)``, ``b* ~ N(0, 1)``, noise ``N(0, noise^2)``; all drawn from
    ``numpy.random.default_rng(seed)`` in float64 and stored as float32; ``train_size`` defaults
    to 1000. With ``A = [X, 1]`` (the float32 training data) and the MSE loss
    :math:`\frac1n\|A\theta - y\|^2`, the optimum of
    :math:`\frac1n\|A\theta-y\|^2 + \frac{l_2}{2}\|\theta\|^2` solves
    :math:`(\frac2n A^\top A + l_2 I)\theta = \frac2n A^\top y`; ``optimum = theta`` in the order
    ``[weight (1, dim), bias (1,)]`` of ``nn.Linear(dim, 1)``.
    """
    n = 1000 if train_size is None else train_size
    test_size, dim, noise, l2 = p.test_size, p.dim, p.noise, p.l2
    rng = np.random.default_rng(seed)
    w, b = rng.standard_normal(dim), rng.standard_normal()
    x = rng.standard_normal((n + test_size, dim)).astype(np.float32)
    y = (x.astype(np.float64) @ w + b + noise * rng.standard_normal(n + test_size)).astype(np.float32)
    a = np.hstack([x[:n], np.ones((n, 1), np.float32)]).astype(np.float64)
    lhs = 2.0 / n * a.T @ a + l2 * np.eye(dim + 1)
    theta = np.linalg.solve(lhs, 2.0 / n * a.T @ y[:n].astype(np.float64))
    return Dataset(
        name="linear",
        x_train=torch.from_numpy(x[:n]),
        y_train=torch.from_numpy(y[:n]),
        x_test=torch.from_numpy(x[n:]),
        y_test=torch.from_numpy(y[n:]),
        num_classes=0,
        input_shape=(dim,),
        task="regression",
        optimum=torch.from_numpy(theta.astype(np.float32)),
        l2=float(l2),
        info={"w_true": w, "b_true": b, "optimum_float64": theta},
    )
