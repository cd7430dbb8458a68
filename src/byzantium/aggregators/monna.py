"""MoNNA: mean of the nearest neighbours of a trusted pivot (Farhadkhani et al., ICML 2023)."""

from __future__ import annotations

import numpy as np
from torch import Tensor

from ._distances import mean_of_rows, sq_distances_numpy
from .registry import N_GT_2F, AggregatorError, rule

__all__ = ["monna"]



@rule(
    "monna",
    constraint=N_GT_2F,
    summary="mean of the n-f nearest neighbours of the pivot input (itself included)",
    reference=(
        "Farhadkhani, Guerraoui, Gupta, Hoang, Pinot, Stephan, Robust collaborative learning "
        "with linear gradient overhead, ICML 2023"
    ),
)
def monna(grads: Tensor, *, f: int = 0, pivot: int = 0) -> Tensor:
    r"""MoNNA (Farhadkhani et al. 2023): :math:`\frac{1}{n-f}\sum_{i \in N} x_i` where ``N`` is the
    pivot and its ``n - f - 1`` nearest other inputs. Requires ``n > 2f``.

    The pivot is the caller's own (trusted) vector in peer-to-peer learning; with an honest
    pivot, every selected input is at most as far from it as the farthest honest input, since at
    least ``n - f`` honest inputs are candidates. Ties in distance go to lower indices.
    """
    n = grads.shape[0]
    if int(pivot) != pivot or not 0 <= pivot < n:
        raise AggregatorError(f"monna: pivot must be an index in [0, n), got pivot={pivot}, n={n}")
    pivot = int(pivot)
    if f == 0:
        return grads.mean(dim=0)
    d = sq_distances_numpy(grads)[pivot]
    others = np.delete(np.arange(n), pivot)
    order = others[np.argsort(d[others], kind="stable")]
    chosen = np.concatenate(([pivot], order[: n - f - 1]))
    return mean_of_rows(grads, chosen)
