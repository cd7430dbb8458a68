"""Pairwise squared Euclidean distances of a stacked ``(n, d)`` tensor, from one Gram matrix.

Distance-based rules (Krum, Bulyan, MDA, MoNNA, the geometric median, CAF, SMEA) only need the
``(n, n)`` matrix :math:`D_{ij} = \\|x_i - x_j\\|^2`. We get it from the Gram matrix
:math:`G = X X^\\top` as :math:`D_{ij} = G_{ii} + G_{jj} - 2 G_{ij}`: one ``(n, d) @ (d, n)``
product, never an ``(n, n, d)`` tensor. Everything after the product is ``O(n^2)``.

Numerics (dstar_byzsgd.md §2.5 "Numerics"):

* **Accumulation.** Column blocks of ``_K`` coordinates are multiplied in the input precision
  (float32 on CPU: the float64 product costs 3x more) and the ``(n, n)`` block results are summed
  in float64. On CUDA the blocks are multiplied in float64 (cheap there, and immune to TF32
  matmul settings).
* **Cancellation.** :math:`G_{ii} + G_{jj} - 2G_{ij}` loses about ``eps * (|x_i|^2 + |x_j|^2)``
  absolutely. Each entry only involves rows ``i`` and ``j``, so a huge Byzantine row cannot spoil
  the honest-honest entries. When some pair is closer than ``_RHO * (|x_i|^2 + |x_j|^2)`` (relative
  error above about 1e-4) and the two rows are not identical, the Gram matrix is recomputed in one
  more pass on rows centred at a *robust* centre: the row with the smallest sum of distances to
  its closest half, which is close to a majority of the rows, hence to honest rows while they are
  a majority. Centring at the mean would let f huge rows inflate every centred honest row, and
  with it the error.
* **Exact ties.** Identical rows get exactly zero distance and bit-identical distance rows, so that
  f identical Byzantine vectors (ALIE) tie exactly in every score. Candidate pairs (tiny computed
  distance) are confirmed with an exact comparison (a strided sample first, then the full rows).
  The result is exactly symmetric with an exact zero diagonal.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.linalg import blas
from torch import Tensor

__all__ = [
    "pairwise_sq_distances",
    "sq_distances_numpy",
    "sq_distances_and_gram",
    "mean_of_rows",
    "weighted_sum_of_rows",
]

_K = 32768  # coordinates per block product (batch element of one bmm)
_TEMP_ELEMS = 1 << 23  # at most this many elements in a temporary (cast / centred) slab
_RHO_ULPS = 2e4  # a pair is ill-conditioned when D_ij <= _RHO_ULPS * eps * (|x_i|^2 + |x_j|^2)
_SAMPLE = 1024  # coordinates of the strided sample used to screen candidate duplicate rows
_SYRK = {torch.float32: blas.ssyrk, torch.float64: blas.dsyrk}


def _compute_dtype(x: Tensor) -> torch.dtype:
    """float64 for float64 inputs and on CUDA (cheap there; immune to TF32), else float32."""
    if x.dtype == torch.float64 or x.device.type == "cuda":
        return torch.float64
    return torch.float32


def _gram_block(b: Tensor) -> Tensor:
    """``b @ b.T`` summed in float64 over column blocks of ``_K`` (``b`` has unit column stride).

    On CPU a contiguous block goes to BLAS ``syrk`` (the symmetric rank-k update), which computes
    one triangle only: half the multiply-adds of a general product, about 2x faster here for
    ``n = 25, d = 1e6``. Elsewhere one batched product over the blocks runs on all threads even
    though the output is tiny.
    """
    n, w = b.shape
    if b.device.type == "cpu" and b.is_contiguous() and b.dtype in _SYRK and n > 1:
        a = b.numpy()
        up = _SYRK[b.dtype](1.0, a.T, trans=1)  # a.T is Fortran-ordered (w, n): no copy
        up = np.triu(up).astype(np.float64)
        return torch.from_numpy(up + np.triu(up, 1).T)
    nb = w // _K
    if nb < 2:
        return (b @ b.T).to(torch.float64)
    v = b[:, : nb * _K].unflatten(1, (nb, _K)).transpose(0, 1)  # (nb, n, _K), a view
    g = torch.bmm(v, v.transpose(1, 2)).to(torch.float64).sum(dim=0)
    if nb * _K < w:
        r = b[:, nb * _K :]
        g += (r @ r.T).to(torch.float64)
    return g


def _gram(x: Tensor, center: Tensor | None = None) -> Tensor:
    """Float64 ``(n, n)`` Gram matrix of ``x`` (or of ``x - center``) in one pass over the data."""
    n, d = x.shape
    cdt = _compute_dtype(x)
    g = torch.zeros((n, n), dtype=torch.float64, device=x.device)
    if d == 0:
        return g
    direct = center is None and x.dtype == cdt and x.stride(-1) == 1
    width = d if direct else max(_K, (_TEMP_ELEMS // max(n, 1)) // _K * _K)
    for a in range(0, d, width):
        blk = x[:, a : a + width]
        if not direct:
            blk = blk.to(dtype=cdt)
            if center is not None:
                blk = blk - center[a : a + width].to(dtype=cdt)
            blk = blk.contiguous()
        g += _gram_block(blk)
    return g


def _from_gram(g: np.ndarray) -> np.ndarray:
    sq = np.diagonal(g).copy()
    dist = sq[:, None] + sq[None, :] - 2.0 * g
    dist = np.triu(dist, 1)
    dist = dist + dist.T  # exactly symmetric, zero diagonal
    np.maximum(dist, 0.0, out=dist)
    return dist


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)  # the smallest index represents the group


def _suspects(dist: np.ndarray, sq: np.ndarray, eps: float) -> list[tuple[int, int]]:
    """Pairs ``i < j`` whose computed distance is within rounding of zero (ill-conditioned)."""
    scale = sq[:, None] + sq[None, :]
    mask = np.triu(dist <= (_RHO_ULPS * eps) * scale, 1)
    return [(int(i), int(j)) for i, j in zip(*np.nonzero(mask))]


def _duplicate_groups(x: Tensor, pairs: list[tuple[int, int]]) -> tuple[_UnionFind, list]:
    """Confirm which candidate pairs are identical rows; return groups and the unconfirmed pairs."""
    uf = _UnionFind(x.shape[0])
    rest = []
    if not pairs:
        return uf, rest
    d = x.shape[1]
    step = max(1, d // _SAMPLE)
    sample = x[:, ::step].to(device="cpu", dtype=torch.float64).numpy()
    for i, j in pairs:
        ri, rj = uf.find(i), uf.find(j)
        if ri == rj:
            continue
        if np.array_equal(sample[ri], sample[rj]) and torch.equal(x[ri], x[rj]):
            uf.union(ri, rj)
        else:
            rest.append((i, j))
    # a pair may have been left over before its rows were found equal through a third row
    rest = [(i, j) for i, j in rest if uf.find(i) != uf.find(j)]
    return uf, rest


def _apply_duplicates(dist: np.ndarray, uf: _UnionFind) -> None:
    """Give every member of a group of identical rows its representative's distance row."""
    n = dist.shape[0]
    roots = np.array([uf.find(i) for i in range(n)])
    if (roots == np.arange(n)).all():
        return
    dist[:, :] = dist[np.ix_(roots, roots)]
    np.fill_diagonal(dist, 0.0)


def sq_distances_numpy(x: Tensor) -> np.ndarray:
    """Like :func:`pairwise_sq_distances` but returns a float64 numpy ``(n, n)`` array (on host).

    The rules do their ``O(n^2)`` combinatorics on this small array.
    """
    return sq_distances_and_gram(x)[0]


def sq_distances_and_gram(x: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``(D, G)``: the squared distances (see :func:`pairwise_sq_distances`) and the uncentred
    Gram matrix ``X X^T`` (float64 host arrays; ``G`` carries the usual rounding, unlike ``D``)."""
    x = x.detach()
    n = x.shape[0]
    if n == 0:
        return np.zeros((0, 0)), np.zeros((0, 0))
    gram = _gram(x).cpu().numpy()
    if not np.isfinite(gram).all():
        # float32 products overflow for rows beyond ~1e19: rescale by a power of two (exact) so
        # the largest entry is about 1, and scale the float64 result back
        amax = float(x.abs().max())
        scale = 2.0 ** -math.ceil(math.log2(amax)) if amax > 0 else 1.0
        gram = _gram(x * scale).cpu().numpy() / (scale * scale)
    dist = _from_gram(gram)
    sq = np.diagonal(gram).copy()
    eps = float(torch.finfo(_compute_dtype(x)).eps)
    uf, ill = _duplicate_groups(x, _suspects(dist, sq, eps))
    if ill:
        # centre at a robust row: smallest sum of distances to its closest half (itself included)
        half = (n + 1) // 2
        r = int(np.argmin(np.sort(dist, axis=1)[:, :half].sum(axis=1)))
        dist = _from_gram(_gram(x, center=x[r]).cpu().numpy())
    _apply_duplicates(dist, uf)
    return dist, gram


def pairwise_sq_distances(x: Tensor) -> Tensor:
    r"""Squared Euclidean distances :math:`D_{ij} = \|x_i - x_j\|^2` of the rows of ``x``.

    Returns a float64 ``(n, n)`` tensor on ``x``'s device: exactly symmetric, non-negative, zero on
    the diagonal and exactly zero (with identical rows) between identical inputs. Cost: one Gram
    product (see the module docstring); two when some distinct rows are so close, relative to
    their norms, that the first product cannot resolve their distance.
    """
    if not isinstance(x, Tensor) or x.dim() != 2 or not x.is_floating_point():
        raise ValueError(
            "pairwise_sq_distances: x must be a floating (n, d) tensor, got "
            f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))}"
        )
    return torch.from_numpy(sq_distances_numpy(x)).to(x.device)


def mean_of_rows(grads: Tensor, idx) -> Tensor:
    """Average of the rows ``idx`` of ``grads``: one pass ``(1_idx @ grads) / m``, no gather copy.

    The 0/1 weights make every product exact (rows outside ``idx`` contribute exactly 0, inputs
    being finite), so this rounds like summing the selected rows and dividing once.
    """
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    w = np.zeros(grads.shape[0])
    w[idx] = 1.0
    return weighted_sum_of_rows(grads, w) / len(idx)


def weighted_sum_of_rows(grads: Tensor, w: np.ndarray) -> Tensor:
    """``sum_i w_i x_i`` for host float64 weights ``w``, in ``grads``' dtype and on its device."""
    wt = torch.as_tensor(np.ascontiguousarray(w), dtype=grads.dtype).to(grads.device)
    return wt @ grads
