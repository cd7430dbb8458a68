"""Pre-aggregations: maps ``(n, d) -> (m, d)`` applied before a robust rule.

* :func:`nnm`: nearest-neighbour mixing (Allouah et al. 2023), ``(n, f) -> (n, f)``;
* :func:`bucketing`: random buckets averaged (Karimireddy, He, Jaggi 2022), ``(n, f) ->
  (ceil(n/s), f)``;
* :func:`clip`: static norm clipping, ``(n, f) -> (n, f)``.

Chain them with a rule: ``get("nnm+krum", f=2)``, ``get("bucketing+median", f=1, s=2,
generator=g)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._distances import pairwise_sq_distances
from .registry import N_GT_2F, ConstraintError, preaggregation

__all__ = ["nnm", "bucketing", "clip"]



@preaggregation(
    "nnm",
    constraint=N_GT_2F,
    maps_nf=lambda n, f, p: (n, f),
    summary="nearest-neighbour mixing: each input -> mean of its n-f nearest inputs (itself included)",
    reference="Allouah et al., Fixing by mixing: a recipe for optimal Byzantine ML under "
    "heterogeneity, AISTATS 2023",
)
def nnm(grads: Tensor, *, f: int = 0) -> Tensor:
    r"""Nearest-neighbour mixing (Allouah et al. 2023).

    Input :math:`x_i` is replaced by :math:`\frac{1}{n-f}\sum_{j \in N_i} x_j`, where
    :math:`N_i` holds the :math:`n-f` inputs closest to :math:`x_i` in Euclidean distance,
    :math:`x_i` itself included. Distances come from one Gram matrix; the mixing is one
    ``(n, n) @ (n, d)`` product. Ties at the :math:`(n-f)`-th distance go to the lowest
    index (identical rows have exactly equal distances, see ``_distances``). Requires ``n > 2f``.
    """
    n = grads.shape[0]
    if f == 0:
        return grads.mean(dim=0, keepdim=True).expand(n, -1).clone()
    k = n - f
    dist = pairwise_sq_distances(grads)
    idx = torch.sort(dist, dim=1, stable=True).indices[:, :k]  # ties: lowest index first
    weights = torch.zeros(n, n, dtype=grads.dtype, device=grads.device)
    weights.scatter_(1, idx, 1.0 / k)
    return weights @ grads


def _check_s(s: Any) -> int:
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
        raise ConstraintError(f"bucketing: s (bucket size) must be an integer >= 1, got s={s!r}")
    return int(s)


def _check_generator(name: str, generator: Any) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ConstraintError(
            f"{name}: generator must be a torch.Generator or None, got {type(generator).__name__}"
        )


def _permutation(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor | None:
    """A permutation of ``range(n)`` drawn from ``generator`` (``None``: no permutation)."""
    if generator is None:
        return None
    return torch.randperm(n, generator=generator, device=generator.device).to(device)


def group_indicator(n: int, sizes: list[int], perm: Tensor | None, dtype: torch.dtype) -> Tensor:
    """The ``(g, n)`` CPU 0/1 matrix whose product with the stack gives the group *sums*: row
    ``k`` holds 1 at the (permuted) members of group ``k``, zeros elsewhere.

    0/1 weights keep the product a plain sum: every product is exact, so small integers sum
    exactly whatever the BLAS kernel (its summation order and FMA use vary by CPU); a mean is that
    sum divided by the count (:func:`group_means`), never a sum of ``x / size`` terms.
    """
    group = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    weights = torch.zeros(len(sizes), n, dtype=dtype)
    rows = torch.arange(n) if perm is None else perm.cpu()
    weights[group, rows] = 1.0
    return weights


def group_means(grads: Tensor, sizes: list[int], perm: Tensor | None) -> Tensor:
    """Means of consecutive groups of rows of ``grads[perm]`` with the given ``sizes``.

    A group's mean is its sum divided by its count: one ``(g, n) @ (n, d)`` product with a 0/1
    indicator (:func:`group_indicator`), then a division per row; ``grads[perm]`` is never
    materialized.
    """
    weights = group_indicator(grads.shape[0], sizes, perm, grads.dtype)
    sums = weights.to(grads.device) @ grads
    return sums.div_(torch.tensor(sizes, dtype=grads.dtype, device=grads.device).unsqueeze(1))


def _bucketing_nf(n: int, f: int, params: dict[str, Any]) -> tuple[int, int]:
    return -(-n // _check_s(params.get("s"))), f


@preaggregation(
    "bucketing",
    maps_nf=_bucketing_nf,
    summary="random buckets of size s, each averaged: (n, f) -> (ceil(n/s), f)",
    reference="Karimireddy, He, Jaggi, Byzantine-robust learning on heterogeneous datasets via "
    "bucketing, ICLR 2022",
)
def bucketing(grads: Tensor, *, s: int, generator: torch.Generator | None = None) -> Tensor:
    r"""Bucketing (Karimireddy, He, Jaggi 2022).

    Permute the ``n`` inputs with a permutation drawn from ``generator``, cut the permuted list
    into consecutive buckets of ``s`` (the last one holds the remaining ``n mod s`` when ``s``
    does not divide ``n``) and return the ``ceil(n/s)`` bucket means. Each Byzantine input spoils
    at most one bucket, so ``f`` carries over unchanged to the next rule, which sees
    ``ceil(n/s)`` inputs: choose ``s`` so that it still satisfies that rule's constraint
    (checked when the chain runs, naming the stage).

    ``generator=None`` keeps the given order (deterministic, no randomness); the paper's
    guarantee assumes a fresh random permutation each round: pass a seeded ``torch.Generator``.
    The output is a deterministic function of the inputs and the generator's state.
    """
    s = _check_s(s)
    _check_generator("bucketing", generator)
    n = grads.shape[0]
    sizes = [s] * (n // s) + ([n % s] if n % s else [])
    return group_means(grads, sizes, _permutation(n, generator, grads.device))


def _check_tau(name: str, tau: Any) -> float:
    try:
        t = float(tau)
    except (TypeError, ValueError):
        raise ConstraintError(f"{name}: tau must be a positive finite number, got tau={tau!r}")
    if not (t > 0 and math.isfinite(t)):
        raise ConstraintError(f"{name}: tau must be a positive finite number, got tau={tau!r}")
    return t


@preaggregation(
    "clip",
    summary="static norm clipping: every input scaled to norm <= tau",
    reference="e.g. Karimireddy, He, Jaggi, Learning from history for Byzantine robust "
    "optimization, ICML 2021 (static clipping baseline)",
)
def clip(grads: Tensor, *, tau: float) -> Tensor:
    r"""Static norm clipping: :math:`x_i \mapsto x_i \min(1, \tau / \lVert x_i \rVert)`.

    Rows with norm at most ``tau`` pass unchanged; longer ones are scaled onto the sphere of
    radius ``tau``. Bounds any single input's influence on a following mean by ``tau / n``.
    ``(n, f) -> (n, f)``. Requires ``tau > 0``.
    """
    tau = _check_tau("clip", tau)
    norms = torch.linalg.vector_norm(grads, dim=1)
    over = norms > tau
    huge = ~torch.isfinite(norms)  # finite rows whose norm overflows the dtype
    if not bool((over | huge).any()):
        return grads.clone()
    factors = torch.where(over, tau / norms, torch.ones_like(norms))
    out = grads * factors[:, None]
    if bool(huge.any()):  # x/amax has norm in [1, sqrt(d)]: clip that instead
        rows = grads[huge]
        rows = rows / rows.abs().amax(dim=1, keepdim=True)
        out[huge] = rows * (tau / torch.linalg.vector_norm(rows, dim=1))[:, None]
    return out
