"""Coordinate-wise rules: mean, median, trimmed mean, Meamed.

Each coordinate is aggregated on its own, from the ``n`` values of that coordinate. On CPU the
order statistics come from :func:`._select.select_reduce` (a pruned sorting network over column
blocks, reduced in cache into the ``(d,)`` output); on other devices from ``torch.sort``. The two
paths compute the same formulas (tests check that they agree).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from ._select import (
    as_2d,
    coordinate_median,
    median_ranks,
    scratch,
    select_reduce,
    sort_rows,
    uses_numpy_path,
)
from .registry import N_GT_2F, ConstraintError, rule

__all__ = ["mean", "median", "trimmed_mean", "meamed", "N_GT_2F"]



@rule("mean", summary="arithmetic mean (no robustness; f = 0)")
def mean(grads: Tensor) -> Tensor:
    """Arithmetic mean of the ``n`` inputs. Breaks down with a single Byzantine input."""
    return grads.mean(dim=0)


@rule(
    "median",
    constraint=N_GT_2F,
    summary="coordinate-wise median (midpoint for even n)",
    reference="Yin et al., Byzantine-robust distributed learning, ICML 2018",
)
def median(grads: Tensor, *, f: int = 0) -> Tensor:
    r"""Coordinate-wise median, midpoint convention for even ``n`` (Yin et al. 2018).

    For odd ``n`` each output coordinate is the middle value :math:`x_{((n+1)/2)j}`; for even
    ``n`` it is :math:`\tfrac12 x_{(n/2)j} + \tfrac12 x_{(n/2+1)j}`. Each output coordinate lies
    within the range of the honest values of that coordinate as long as fewer than half the inputs
    are Byzantine. ``f`` does not change the output; it declares how many inputs may be Byzantine,
    which the constraint ``n > 2f`` checks and the non-finite policy uses (up to ``f`` rows with
    NaN/Inf are dropped before the median is taken).
    """
    return coordinate_median(grads)


def _trimmed_block(stats: Any, block: np.ndarray, out: np.ndarray) -> None:
    mid = as_2d(stats)  # ranks f .. n-f-1
    np.sum(mid, axis=0, out=out)
    out /= mid.shape[0]


@rule(
    "trimmed_mean",
    constraint=N_GT_2F,
    summary="per coordinate, drop the f largest and f smallest, average the rest",
    reference="Yin et al., Byzantine-robust distributed learning, ICML 2018",
)
def trimmed_mean(grads: Tensor, *, f: int = 0) -> Tensor:
    r"""Coordinate-wise trimmed mean (Yin et al. 2018).

    For each coordinate :math:`j`, sort :math:`x_{(1)j} \le \dots \le x_{(n)j}` and return
    :math:`\frac{1}{n-2f}\sum_{i=f+1}^{n-f} x_{(i)j}`. Requires ``n > 2f``. With at most ``f``
    Byzantine inputs every kept value lies within the honest range of its coordinate.
    """
    n = grads.shape[0]
    if f == 0:
        return grads.mean(dim=0)
    if uses_numpy_path(grads):
        return select_reduce(grads, range(f, n - f), _trimmed_block)
    return sort_rows(grads)[f : n - f].mean(dim=0)


def _meamed_block_fn(n: int, f: int) -> Callable[..., None]:
    """Block reduction computing Meamed from all ``n`` sorted rows (numpy path, ``1 <= f < n``).

    The arithmetic of :func:`_meamed_sorted`, on a ``(n, B)`` block of sorted columns in cache.
    """
    k = n - f
    med = median_ranks(n)

    def fn(stats: Any, block: np.ndarray, out: np.ndarray) -> None:
        # sums of windows holding values near the float maximum may overflow: such windows are
        # never optimal (their largest deviation is huge) and are masked out below
        with np.errstate(over="ignore", invalid="ignore"):
            _fn(as_2d(stats), out)

    def _fn(s: np.ndarray, out: np.ndarray) -> None:
        w = out.shape[0]
        dt = out.dtype
        m = s[med[0]] if len(med) == 1 else s[med[0]] * 0.5 + s[med[1]] * 0.5
        # dev[i]: largest deviation from m in the window of sorted ranks [i, i + k)
        dev = np.subtract(m, s[: f + 1], out=scratch(f + 1, w, dt, 1))
        np.maximum(dev, s[k - 1 :] - m, out=dev)
        optimal = np.equal(dev, dev.min(axis=0), out=scratch(f + 1, w, np.bool_, 2))
        win = scratch(f + 1, w, dt, 3)
        if n > 2 * f:
            # every window holds ranks [f, n-f): W_i = L_i + M + R_i, terms only ever added
            # (running sums row by row: numpy's cumsum along axis 0 is not vectorized)
            mid = s[f : n - f].sum(axis=0)
            win[f] = mid
            for i in range(f - 1, -1, -1):  # L_i + M = s_i + (L_{i+1} + M)
                np.add(s[i], win[i + 1], out=win[i])
            right = dev[0]  # free now
            np.copyto(right, s[n - f])
            win[1] += right
            for i in range(2, f + 1):  # R_i = R_{i-1} + s_{n-f+i-1}
                right += s[n - f + i - 1]
                win[i] += right
        else:  # k <= f (Bulyan's inner call): windows share no middle, sum each one
            for i in range(f + 1):
                np.sum(s[i : i + k], axis=0, out=win[i])
        # zero the non-optimal window sums by masking their bits (x & 0 = +0.0): a select that
        # is branch-free, unlike a masked copy, and safe for an overflowed sum, unlike x * 0
        ibits = np.int32 if dt == np.float32 else np.int64
        mask = np.subtract(0, optimal.view(np.int8), out=scratch(f + 1, w, ibits, 4), dtype=ibits)
        np.bitwise_and(win.view(ibits), mask, out=win.view(ibits))
        count = np.add.reduce(optimal.view(np.uint8), axis=0, dtype=np.uint16)
        np.sum(win, axis=0, out=out)
        out /= count
        out /= k

    return fn


def _meamed_sorted(s: Tensor, f: int) -> Tensor:
    """Meamed from the column-sorted stack ``s`` (generic path, any device; ``1 <= f < n``)."""
    n = s.shape[0]
    k = n - f
    med = median_ranks(n)
    m = s[med[0]] if len(med) == 1 else s[med[0]] * 0.5 + s[med[1]] * 0.5
    dev = torch.maximum(m - s[: f + 1], s[k - 1 :] - m)  # (f + 1, d)
    optimal = dev == dev.amin(dim=0)
    if n > 2 * f:
        mid = s[f : n - f].sum(dim=0)
        zero = torch.zeros_like(s[:1])
        left = torch.cat([s[:f].flip(0).cumsum(0).flip(0), zero])  # L_i = s_i + ... + s_{f-1}
        right = torch.cat([zero, s[n - f :].cumsum(0)])  # R_i = s_{n-f} + ... + s_{n-f+i-1}
        win = left + mid + right
    else:  # k <= f: no common middle
        win = torch.stack([s[i : i + k].sum(dim=0) for i in range(f + 1)])
    total = torch.where(optimal, win, torch.zeros_like(win)).sum(dim=0)
    return total / optimal.sum(dim=0).to(s.dtype) / k


@rule(
    "meamed",
    constraint=N_GT_2F,
    summary="per coordinate, mean of the n-f values closest to the median",
    reference="Xie, Koyejo, Gupta, Generalized Byzantine-tolerant SGD, arXiv 1802.10116, 2018",
)
def meamed(grads: Tensor, *, f: int = 0) -> Tensor:
    r"""Mean-around-median (Xie et al. 2018).

    For each coordinate :math:`j` with median :math:`m_j` (midpoint for even ``n``), average the
    :math:`k = n-f` values :math:`x_{ij}` with the smallest :math:`|x_{ij} - m_j|`. Requires
    ``n > 2f``; ``f = 0`` gives the mean. Used by Bulyan as its second stage, whose call of the
    raw function (``meamed.__wrapped_rule__``) may have ``n/2 <= f < n``: that works too (the
    ``k`` values nearest the median are then fewer than half).

    The ``k`` values nearest :math:`m_j` are ``k`` consecutive sorted values
    :math:`x_{(i+1)j} \le \dots \le x_{(i+k)j}` with :math:`0 \le i \le f` (a window); the
    window is optimal when its largest deviation
    :math:`T_i = \max(m_j - x_{(i+1)j},\, x_{(i+k)j} - m_j)` is minimal. When several windows
    are optimal (ties at the threshold distance, e.g. :math:`m_j \pm t` both present) the output
    is the average of their means, which keeps the rule permutation invariant. Window sums are
    formed from the values they contain (never by subtracting values that left the window), so a
    far outlier outside the window leaves no rounding residue.
    """
    n = grads.shape[0]
    if not 0 <= f < n:  # the raw rule (Bulyan calls it with f >= n/2) still needs k = n-f >= 1
        raise ConstraintError(f"meamed: requires 0 <= f < n, got n={n}, f={f}")
    if f == 0:
        return grads.mean(dim=0)
    if uses_numpy_path(grads):
        return select_reduce(grads, range(n), _meamed_block_fn(n, f))
    return _meamed_sorted(sort_rows(grads), f)
