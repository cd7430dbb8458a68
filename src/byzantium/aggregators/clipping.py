r"""Centered clipping (Karimireddy, He, Jaggi, "Learning from history for Byzantine robust
optimization", ICML 2021).

Starting from :math:`v_0`, repeat ``L`` times

.. math::
    v_{l+1} = v_l + \frac1n \sum_{i=1}^n (x_i - v_l)\,\min\Big(1, \frac{\tau}{\lVert x_i - v_l\rVert}\Big).

Implementation: with :math:`u_l = v_l - v_0` and :math:`y_i = x_i - v_0`, the distances are
:math:`\lVert x_i - v_l\rVert^2 = \lVert y_i\rVert^2 - 2\,y_i\cdot u_l + \lVert u_l\rVert^2`,
all measured from the robust start (no cancellation against the raw gradients' norms). On CPU one
cache-blocked pass computes the coordinate-median start and :math:`\lVert y_i\rVert^2`; each
iteration is then one more pass that forms :math:`u_{l+1} = (1-\bar c)\,u_l + \frac1n(c^\top X
- (\textstyle\sum_i c_i)\,v_0)` block by block and, on the same block while it is in cache, the
dot products :math:`y_i\cdot u_{l+1} = x_i\cdot u_{l+1} - v_0\cdot u_{l+1}` the next iteration
needs (two matrix-vector products per block, no ``(n, d)`` temporary; ``L + 1`` reads of the stack
in all). The cross terms lose about ``eps * |x| / |x - v0|`` relative accuracy to cancellation,
negligible unless the inputs agree to many digits (then every clipping factor is 1 anyway).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._select import (
    coordinate_median,
    median_block,
    median_ranks,
    scratch,
    select_map,
    uses_numpy_path,
)
from .registry import N_GT_2F, ConstraintError, rule

__all__ = ["centered_clipping"]


def _iterate_numpy(x: Tensor, start: Tensor | None, tau: float | None, iterations: int) -> Tensor:
    """Blocked CPU implementation (see the module docstring)."""
    n = x.shape[0]
    s0 = None if start is None else start.detach().contiguous().numpy()

    def first(stats: Any, block: np.ndarray, out: np.ndarray, cols: slice) -> np.ndarray:
        if s0 is None:
            median_block(stats, block, out)
        else:
            np.copyto(out, s0[cols])
        y = np.subtract(block, out, out=scratch(block.shape[0], block.shape[1], block.dtype))
        y_t = torch.from_numpy(y)
        return torch.linalg.vecdot(y_t, y_t).double().numpy()  # |y_i|^2 on this block

    v0_t, parts = select_map(x, median_ranks(n) if start is None else (), first)
    v0 = v0_t.numpy()
    sq = np.sum(parts, axis=0) if parts else np.zeros(n)
    radius = float(np.median(np.sqrt(sq))) if tau is None else tau
    u = np.zeros_like(v0)
    dots, uu = np.zeros(n), 0.0  # y_i . u and |u|^2 for the current u
    for it in range(iterations):
        with np.errstate(over="ignore", invalid="ignore"):
            c = _clip_weights(sq - 2 * dots + uu, radius)
        keep = 1.0 - float(c.mean())
        cn = (c / n).astype(v0.dtype)
        csum = float(cn.sum(dtype=v0.dtype))
        cn_t = torch.from_numpy(cn)
        last = it == iterations - 1

        def step(
            stats: list[np.ndarray], block: np.ndarray, out: np.ndarray, cols: slice
        ) -> tuple[np.ndarray, float] | None:
            # u <- (1 - mean c) u + (1/n) sum_i c_i y_i, with sum_i c_i y_i = c.X - (sum c) v0
            vb, ub = v0[cols], u[cols]
            # Both products go through torch (MKL), in the layouts where it is fast: numpy's
            # OpenBLAS gemv is slow on these strided blocks, and alternating the two libraries'
            # thread pools in one pass costs more than either alone.
            ub_t, vb_t, block_t = torch.from_numpy(ub), torch.from_numpy(vb), torch.from_numpy(block)
            ub_t.addmv_(block_t.T, cn_t, beta=keep)
            ub_t.sub_(vb_t, alpha=csum)
            if last:
                return None
            # y_i . u = x_i . u - v0 . u
            dots = (ub_t[None, :] @ block_t.T)[0].double().numpy()
            return dots - float(torch.dot(vb_t, ub_t)), float(torch.dot(ub_t, ub_t))

        _, parts = select_map(x, (), step)
        if not last:
            with np.errstate(over="ignore", invalid="ignore"):
                dots = np.sum([p[0] for p in parts], axis=0)
            uu = float(sum(p[1] for p in parts))
    u += v0
    return torch.from_numpy(u)


def _iterate_torch(x: Tensor, start: Tensor | None, tau: float | None, iterations: int) -> Tensor:
    """The same iteration with whole-tensor torch ops (any device; allocates one (n, d) copy)."""
    n = x.shape[0]
    v0 = coordinate_median(x) if start is None else start
    y = x - v0
    sq = (y * y).sum(dim=1).double().cpu().numpy()
    radius = float(np.median(np.sqrt(sq))) if tau is None else tau
    u = torch.zeros_like(v0)
    dots, uu = np.zeros(n), 0.0
    for it in range(iterations):
        with np.errstate(over="ignore", invalid="ignore"):
            c = _clip_weights(sq - 2 * dots + uu, radius)
        cn = torch.from_numpy(c / n).to(device=x.device, dtype=x.dtype)
        u = u * (1.0 - float(c.mean())) + cn @ y
        if it < iterations - 1:
            dots = (y @ u).double().cpu().numpy()
            uu = float((u.double() @ u.double()).cpu())
    return v0 + u


def _clip_weights(sq_dist: np.ndarray, radius: float) -> np.ndarray:
    """``min(1, radius / ||x_i - v||)`` from squared distances (1 at distance 0).

    A distance that overflowed the input dtype (inf, or NaN from inf - inf) belongs to an input
    so far away that its weight is 0.
    """
    dist = np.sqrt(np.where(np.isnan(sq_dist), np.inf, np.maximum(sq_dist, 0.0)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(dist > radius, radius / dist, 1.0)


def _check_iterations(iterations: Any) -> int:
    if (
        isinstance(iterations, bool)
        or not isinstance(iterations, (int, np.integer))
        or iterations < 1
    ):
        raise ConstraintError(
            f"centered_clipping: iterations must be an integer >= 1, got iterations={iterations!r}"
        )
    return int(iterations)


def _check_start(start: Any, x: Tensor) -> Tensor | None:
    if start is None:
        return None
    if not isinstance(start, Tensor) or start.shape != (x.shape[1],):
        shape = tuple(start.shape) if isinstance(start, Tensor) else type(start).__name__
        raise ConstraintError(
            f"centered_clipping: start must be a ({x.shape[1]},) tensor like one input row, "
            f"got {shape}"
        )
    if start.device != x.device:
        raise ConstraintError(
            f"centered_clipping: start is on {start.device} but the inputs are on {x.device}"
        )
    if not bool(torch.isfinite(start).all()):
        raise ConstraintError("centered_clipping: start must be finite, got NaN/Inf entries")
    return start.detach().to(x.dtype)


@rule(
    "centered_clipping",
    constraint=N_GT_2F,
    summary="v <- v + mean_i clip(x_i - v, tau), L iterations from the coordinate median "
    "(or a given start, e.g. the previous aggregate)",
    reference="Karimireddy, He, Jaggi, Learning from history for Byzantine robust optimization, "
    "ICML 2021",
)
def centered_clipping(
    grads: Tensor,
    *,
    f: int = 0,
    tau: float | None = None,
    iterations: int = 3,
    start: Tensor | None = None,
) -> Tensor:
    r"""Centered clipping (Karimireddy, He, Jaggi 2021).

    ``L = iterations`` steps of :math:`v \leftarrow v + \frac1n\sum_i (x_i - v)\min(1,
    \tau/\lVert x_i - v\rVert)` from ``start`` (a ``(d,)`` tensor; the paper uses the previous
    round's aggregate, with momentum on the workers) or, when ``start`` is None, from the
    coordinate-wise median.

    ``tau`` is the clipping radius. ``tau=None`` (our default, not the paper's: it fixes
    :math:`\tau` by hand) takes the median over inputs of :math:`\lVert x_i - v_0\rVert`, a
    scale-free radius that Byzantine inputs cannot inflate while ``f < n/2``. ``f`` declares the
    number of Byzantine inputs for the constraint ``n > 2f`` (needed by the median start) and the
    non-finite policy; it does not enter the update.
    """
    n, d = grads.shape
    iterations = _check_iterations(iterations)
    start = _check_start(start, grads)
    if tau is not None:
        t = float(tau) if isinstance(tau, (int, float, np.floating, np.integer)) else math.nan
        if isinstance(tau, bool) or not (t > 0 and math.isfinite(t)):
            raise ConstraintError(
                f"centered_clipping: tau must be a positive finite number, got tau={tau!r}"
            )
    radius = None if tau is None else float(tau)
    if uses_numpy_path(grads):
        return _iterate_numpy(grads, start, radius, iterations)
    return _iterate_torch(grads, start, radius, iterations)
