r"""Minimum-diameter averaging, MDA (El Mhamdi, Guerraoui, Guirguis, Hoang, Rouault, PODC 2020).

:math:`\mathrm{MDA}_f(x_1..x_n) = \frac{1}{n-f}\sum_{i\in S^*} x_i` where :math:`S^*` minimises
:math:`\mathrm{diam}(S) = \max_{i,j\in S}\|x_i - x_j\|` over subsets of size ``n - f``.

Exact without scanning the :math:`\binom{n}{f}` subsets (dstar_byzsgd.md §2.5):

* **Optimal diameter.** Let ``(a, b)`` be the farthest pair of the current set ``S``. A subset
  keeping both has diameter ``diam(S)``, the most any subset of ``S`` can have; so an optimal
  subset is found among those dropping ``a`` or dropping ``b``: at most :math:`2^f` leaves.
  Visited sets are memoised, ``diam(S)`` of every visited set is an upper bound on the optimum
  (any ``n - f`` subset of ``S`` is no wider), and a branch is cut when a greedy matching of the
  pairs at least as far apart as the best diameter found needs more removals than are left.
* **Tie-break.** byzfl and Garfield scan ``itertools.combinations`` and keep the first strict
  improvement, i.e. the lexicographically smallest optimal index tuple. We rebuild that subset
  greedily: keep index ``i`` (in increasing order) iff some completion of the kept set to
  ``n - f`` indices keeps every pair within the optimal diameter; that is a vertex-cover question
  on the "conflict graph" of pairs farther apart than the optimum, answered by bounded branching.

All of it runs on the ``(n, n)`` squared-distance matrix (one Gram product, exact zeros between
identical inputs), on the host. Squared distances order pairs exactly like distances.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from ._distances import mean_of_rows, sq_distances_numpy
from .registry import N_GT_2F, AggregatorError, rule

__all__ = ["mda", "mda_subset"]

DEFAULT_MAX_COST = 1e8


def _matching_size(conflict: np.ndarray, limit: int) -> int:
    """Size of a greedy maximal matching of the graph ``conflict`` (stops once above ``limit``).

    Any vertex cover needs at least that many vertices: one per matched edge.
    """
    m = conflict.shape[0]
    used = np.zeros(m, dtype=bool)
    size = 0
    for i in range(m):
        if used[i]:
            continue
        nbr = np.flatnonzero(conflict[i] & ~used)
        nbr = nbr[nbr != i]
        if nbr.size:
            used[i] = used[nbr[0]] = True
            size += 1
            if size > limit:
                break
    return size


def _optimal_diameter(dist: np.ndarray, f: int) -> float:
    """Smallest (squared) diameter over subsets of size ``n - f``: the 2^f branch and bound."""
    n = dist.shape[0]
    best = np.inf
    seen: set[bytes] = set()

    def visit(idx: np.ndarray, r: int) -> None:
        nonlocal best
        key = idx.tobytes()  # idx stays sorted (np.delete), so equal sets give equal keys
        if key in seen:
            return
        seen.add(key)
        sub = dist[np.ix_(idx, idx)]
        a, b = divmod(int(np.argmax(sub)), idx.size)
        diam = float(sub[a, b])
        best = min(best, diam)  # any n-f subset of idx is no wider than idx itself
        if r == 0 or diam == 0.0:
            return
        # to beat `best`, every pair at distance >= best must lose an end: a vertex cover
        if _matching_size(sub >= best, r) > r:
            return
        visit(np.delete(idx, a), r - 1)
        visit(np.delete(idx, b), r - 1)

    visit(np.arange(n), f)
    return best


def _cover_at_most(adj: np.ndarray, k: int) -> bool:
    """Does the graph ``adj`` (symmetric boolean, no loops) have a vertex cover of size <= k?"""
    deg = adj.sum(axis=1)
    if not deg.any():
        return True
    if k <= 0:
        return False
    v = int(np.argmax(deg))
    if deg[v] == 1:  # a matching: one vertex per edge
        return int(deg.sum()) // 2 <= k
    keep = np.ones(adj.shape[0], dtype=bool)
    keep[v] = False
    # either v is in the cover, or all its neighbours are
    if _cover_at_most(adj[np.ix_(keep, keep)], k - 1):
        return True
    if deg[v] > k:
        return False
    keep = ~adj[v]
    return _cover_at_most(adj[np.ix_(keep, keep)], k - int(deg[v]))


def _lexicographic_subset(dist: np.ndarray, f: int, diam: float) -> np.ndarray:
    """Lexicographically smallest index set of size ``n - f`` with every pair within ``diam``."""
    n = dist.shape[0]
    m = n - f
    conflict = dist > diam
    np.fill_diagonal(conflict, False)
    kept: list[int] = []
    for i in range(n):
        if len(kept) == m:
            break
        if conflict[i, kept].any():
            continue
        trial = kept + [i]
        rest = np.arange(i + 1, n)
        rest = rest[~conflict[np.ix_(rest, trial)].any(axis=1)]  # neighbours of kept must go
        budget = len(trial) + rest.size - m
        if budget >= 0 and _cover_at_most(conflict[np.ix_(rest, rest)], budget):
            kept = trial
    if len(kept) != m:  # cannot happen: diam is attained by some subset
        raise AssertionError(f"mda: tie-break found {len(kept)} of {m} indices")
    return np.asarray(kept)


def _check_cost(n: int, f: int, max_cost: float) -> None:
    cost = float(2**f) * n * n
    if cost > max_cost:
        raise AggregatorError(
            f"mda: exact search costs about 2^f * n^2 = {cost:.3g} operations for n={n}, f={f}, "
            f"above max_cost={max_cost:.3g}; pass a larger max_cost or use a smaller f"
        )


def mda_subset(dist: np.ndarray, f: int, *, max_cost: float = DEFAULT_MAX_COST) -> np.ndarray:
    """Sorted indices of the MDA subset for the squared-distance matrix ``dist`` (host, float64):
    the lexicographically smallest of the minimum-diameter subsets of size ``n - f``."""
    n = dist.shape[0]
    _check_cost(n, f, max_cost)
    if f == 0:
        return np.arange(n)
    return _lexicographic_subset(dist, f, _optimal_diameter(dist, f))


@rule(
    "mda",
    constraint=N_GT_2F,
    summary="mean of the n-f inputs with the smallest diameter (exact, 2^f branch and bound)",
    reference=(
        "El Mhamdi, Guerraoui, Guirguis, Hoang, Rouault, Genuinely distributed Byzantine machine "
        "learning (ByzSGD), PODC 2020"
    ),
)
def mda(grads: Tensor, *, f: int = 0, max_cost: float = DEFAULT_MAX_COST) -> Tensor:
    r"""Minimum-diameter averaging: the mean of a subset :math:`S^*` of ``n - f`` inputs with the
    smallest diameter; among optimal subsets, the lexicographically smallest index tuple (parity
    with byzfl/Garfield brute force). ``f = 0`` is the mean. Requires ``n > 2f``.

    Guarantee (dstar_byzsgd.md §2.5): :math:`\|\mathrm{MDA} - h\| \le \mathrm{diam}(H)` for some
    honest input ``h``. Raises :class:`AggregatorError` when the worst-case search cost
    :math:`2^f n^2` exceeds ``max_cost``.
    """
    n = grads.shape[0]
    _check_cost(n, f, max_cost)
    if f == 0:
        return grads.mean(dim=0)
    return mean_of_rows(grads, mda_subset(sq_distances_numpy(grads), f, max_cost=max_cost))
