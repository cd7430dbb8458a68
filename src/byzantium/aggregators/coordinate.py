"""Coordinate-wise rules: mean, median, trimmed mean, Meamed."""

from __future__ import annotations

import torch
from torch import Tensor

from ._select import coordinate_median, partition_rows
from .registry import Constraint, rule

N_GT_2F = Constraint("n > 2f", lambda n, f: n > 2 * f)


@rule("mean", summary="arithmetic mean (no robustness; f = 0)")
def mean(grads: Tensor) -> Tensor:
    """Arithmetic mean of the ``n`` inputs. Breaks down with a single Byzantine input."""
    return grads.mean(dim=0)


@rule(
    "median",
    summary="coordinate-wise median (midpoint for even n)",
    reference="Yin et al., Byzantine-robust distributed learning, ICML 2018",
)
def median(grads: Tensor) -> Tensor:
    """Coordinate-wise median, midpoint convention for even ``n`` (Yin et al. 2018).

    Each output coordinate lies within the range of the honest values of that coordinate as long
    as fewer than half the inputs are Byzantine.
    """
    return coordinate_median(grads)


@rule(
    "trimmed_mean",
    constraint=N_GT_2F,
    summary="per coordinate, drop the f largest and f smallest, average the rest",
    reference="Yin et al., Byzantine-robust distributed learning, ICML 2018",
)
def trimmed_mean(grads: Tensor, *, f: int = 0) -> Tensor:
    r"""Coordinate-wise trimmed mean (Yin et al. 2018).

    For each coordinate :math:`j`, sort :math:`x_{1j} \le \dots \le x_{nj}` and return
    :math:`\frac{1}{n-2f}\sum_{i=f+1}^{n-f} x_{ij}`. Requires ``n > 2f``.
    """
    n = grads.shape[0]
    if f == 0:
        return grads.mean(dim=0)
    low = partition_rows(grads, f)  # rows [0, f) are the f smallest of each column
    rest = low[f:]
    m = n - 2 * f
    mid = partition_rows(rest, m - 1)[:m]  # of the n-f left, keep the m smallest
    return mid.mean(dim=0)


@rule(
    "meamed",
    constraint=N_GT_2F,
    summary="per coordinate, mean of the n-f values closest to the median",
    reference="Xie, Koyejo, Gupta, Generalized Byzantine-tolerant SGD, 2018",
)
def meamed(grads: Tensor, *, f: int = 0) -> Tensor:
    r"""Mean-around-median (Xie et al. 2018).

    For each coordinate :math:`j` with median :math:`m_j`, average the :math:`n-f` values
    :math:`x_{ij}` with the smallest :math:`|x_{ij} - m_j|`. Requires ``n > 2f``.
    """
    n = grads.shape[0]
    if f == 0:
        return grads.mean(dim=0)
    med = coordinate_median(grads)
    dev = (grads - med).abs()
    k = n - f
    # the k-th smallest deviation per column; keep values strictly below it, then fill ties
    kth = partition_rows(dev, k - 1)[k - 1]
    below = dev < kth
    n_below = below.sum(dim=0)
    sum_below = torch.where(below, grads, torch.zeros((), dtype=grads.dtype)).sum(dim=0)
    at = dev == kth
    # among values at the threshold deviation take (k - n_below) of them, in the order of their
    # mean (ties at equal |x - m| are either equal values or symmetric pairs around m)
    n_at = at.sum(dim=0)
    sum_at = torch.where(at, grads, torch.zeros((), dtype=grads.dtype)).sum(dim=0)
    take = (k - n_below).to(grads.dtype)
    return (sum_below + take * sum_at / n_at.to(grads.dtype)) / k
