r"""SMEA, smallest maximum eigenvalue averaging (Allouah, Guerraoui, Gupta, Pinot, Stephan 2023).

:math:`\mathrm{SMEA}_f(x_1..x_n) = \frac{1}{n-f}\sum_{i \in S^*} x_i`, where :math:`S^*`
minimises :math:`\lambda_{\max}(\Sigma_S)`, :math:`\Sigma_S = \frac{1}{|S|}\sum_{i\in S}
(x_i - \mu_S)(x_i - \mu_S)^\top`, over subsets of size ``n - f`` (byzfl ``SMEA``).

Computation: exact enumeration of the :math:`\binom{n}{f}` subsets, but each eigenvalue comes from
an ``(n-f) x (n-f)`` matrix: :math:`\Sigma_S` has the non-zero eigenvalues of
:math:`K_S / |S|`, with :math:`K_S = -\tfrac12 J D_S J` the doubly centred submatrix of the
squared distances (:math:`J = I - \mathbf 1\mathbf 1^\top/|S|`). ``D`` is computed once (one Gram
product); subsets are processed in batches with a batched symmetric eigensolver. Subsets are
scanned in ``itertools.combinations`` order and the first minimum wins (byzfl's tie-break), up to
rounding in the eigenvalues. byzfl estimates each eigenvalue with one power-method step from a
random vector; ours are exact.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from torch import Tensor

from ._distances import mean_of_rows, sq_distances_numpy
from .registry import N_GT_2F, AggregatorError, rule

__all__ = ["smea", "smea_subset"]

DEFAULT_MAX_COST = 2e9
_BATCH = 4096


def _check_cost(n: int, f: int, max_cost: float) -> None:
    m = n - f
    cost = float(math.comb(n, f)) * m**3
    if cost > max_cost:
        raise AggregatorError(
            f"smea: exhaustive search costs about C(n, f) * (n-f)^3 = {cost:.3g} operations for "
            f"n={n}, f={f}, above max_cost={max_cost:.3g}; pass a larger max_cost, use a smaller "
            f"f, or use mda/caf"
        )


def subset_top_eigenvalues(dist: np.ndarray, subsets: np.ndarray) -> np.ndarray:
    """:math:`\\lambda_{\\max}(\\Sigma_S)` for each row ``S`` of the ``(b, m)`` index array."""
    m = subsets.shape[1]
    sub = dist[subsets[:, :, None], subsets[:, None, :]]  # (b, m, m)
    row = sub.mean(axis=2, keepdims=True)
    k = -0.5 * (sub - row - np.swapaxes(row, 1, 2) + row.mean(axis=1, keepdims=True))
    return np.maximum(np.linalg.eigvalsh(k)[:, -1], 0.0) / m


def smea_subset(dist: np.ndarray, f: int, *, max_cost: float = DEFAULT_MAX_COST) -> np.ndarray:
    """Sorted indices of the SMEA subset for the squared-distance matrix ``dist`` (host)."""
    n = dist.shape[0]
    _check_cost(n, f, max_cost)
    if f == 0:
        return np.arange(n)
    combos = itertools.combinations(range(n), n - f)
    best_val, best = np.inf, None
    while True:
        chunk = np.array(list(itertools.islice(combos, _BATCH)), dtype=np.int64)
        if chunk.size == 0:
            break
        vals = subset_top_eigenvalues(dist, chunk)
        j = int(np.argmin(vals))
        if vals[j] < best_val:
            best_val, best = float(vals[j]), chunk[j]
    return best


@rule(
    "smea",
    constraint=N_GT_2F,
    summary="mean of the n-f inputs whose covariance has the smallest top eigenvalue (exhaustive)",
    reference=(
        "Allouah, Guerraoui, Gupta, Pinot, Stephan, On the privacy-robustness-utility trilemma "
        "in distributed learning, ICML 2023 (byzfl.SMEA)"
    ),
)
def smea(grads: Tensor, *, f: int = 0, max_cost: float = DEFAULT_MAX_COST) -> Tensor:
    r"""SMEA (see the module docstring). ``f = 0`` is the mean. Requires ``n > 2f``. Raises
    :class:`AggregatorError` when :math:`\binom{n}{f}(n-f)^3` exceeds ``max_cost``.
    """
    n = grads.shape[0]
    _check_cost(n, f, max_cost)
    if f == 0:
        return grads.mean(dim=0)
    return mean_of_rows(grads, smea_subset(sq_distances_numpy(grads), f, max_cost=max_cost))
