"""Synthetic softmax classification with the known optimum of the L2-regularised logistic loss
(scipy's L-BFGS in float64), for exactness tests."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ...typed import ConfigError
from .dataset import Dataset
from .registry import dataset

__all__ = ["LogisticParams"]


@dataclass(frozen=True)
class LogisticParams:
    test_size: int = 500
    dim: int = 20
    num_classes: int = 2
    l2: float = 0.01
    """The L2 coefficient of the objective (> 0: a unique optimum)."""
    temperature: float = 1.0
    """Divides the true logits: higher is noisier labels."""

    def __post_init__(self) -> None:
        for name in ("test_size", "dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)!r}")
        if self.num_classes < 2:
            raise ConfigError(f"num_classes: must be >= 2, got {self.num_classes!r}")
        if not (self.l2 > 0 and math.isfinite(self.l2)):
            raise ConfigError(f"l2: must be a finite number > 0 (a unique optimum), got {self.l2!r}")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ConfigError(f"temperature: must be a finite number > 0, got {self.temperature!r}")


@dataset("logistic", params=LogisticParams)
def load_logistic(p: LogisticParams, *, root: Any, train_size: int | None, seed: int) -> Dataset:
    r"""Softmax classification with the optimum of the L2-regularised logistic loss.

    ``X ~ N(0, I_dim)``; labels drawn from ``softmax((X W* + b*) / temperature)`` with
    ``W*`` entries ``N(0, 9 / dim)`` and ``b* ~ N(0, 1)`` (logits of std about 3), so the classes are
    separable-ish but overlap; ``l2 > 0`` makes the optimum unique (softmax weights are otherwise
    only defined up to a shift). ``train_size`` defaults to 1000. The optimum of
    :math:`\frac1n\sum_i \mathrm{CE}(W x_i + b, y_i) + \frac{l_2}{2}(\|W\|^2 + \|b\|^2)` is found
    by scipy's L-BFGS in float64 (gradient norm < 1e-9) and returned in the order
    ``[weight (C, dim), bias (C,)]`` of ``nn.Linear(dim, C)``.
    """
    from scipy.optimize import minimize
    from scipy.special import log_softmax, softmax

    n = 1000 if train_size is None else train_size
    test_size, dim, c, l2, temperature = p.test_size, p.dim, p.num_classes, p.l2, p.temperature
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((c, dim)) * (3.0 / math.sqrt(dim))
    b = rng.standard_normal(c)
    x = rng.standard_normal((n + test_size, dim)).astype(np.float32)
    prob = softmax((x.astype(np.float64) @ w.T + b) / temperature, axis=1)
    u = rng.random((n + test_size, 1))
    y = np.minimum((prob.cumsum(axis=1) < u).sum(axis=1), c - 1).astype(np.int64)

    a = x[:n].astype(np.float64)
    onehot = np.eye(c)[y[:n]]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        wt, bt = theta[: c * dim].reshape(c, dim), theta[c * dim :]
        logits = a @ wt.T + bt
        lsm = log_softmax(logits, axis=1)
        loss = -(onehot * lsm).sum() / n + 0.5 * l2 * theta @ theta
        r = (np.exp(lsm) - onehot) / n  # d loss / d logits
        grad = np.concatenate([(r.T @ a).ravel(), r.sum(axis=0)]) + l2 * theta
        return loss, grad

    res = minimize(
        objective, np.zeros(c * dim + c), jac=True, method="L-BFGS-B",
        options={"gtol": 1e-12, "ftol": 0.0, "maxiter": 10_000},
    )
    gnorm = float(np.linalg.norm(objective(res.x)[1]))
    if gnorm > 1e-7:  # pragma: no cover - L-BFGS on a strongly convex smooth problem
        raise RuntimeError(f"load_dataset('logistic'): optimiser did not converge (|grad|={gnorm:.2e})")
    return Dataset(
        name="logistic",
        x_train=torch.from_numpy(x[:n]),
        y_train=torch.from_numpy(y[:n]),
        x_test=torch.from_numpy(x[n:]),
        y_test=torch.from_numpy(y[n:]),
        num_classes=c,
        input_shape=(dim,),
        optimum=torch.from_numpy(res.x.astype(np.float32)),
        l2=float(l2),
        info={"w_true": w, "b_true": b, "optimum_float64": res.x, "optimum_grad_norm": gnorm},
    )
