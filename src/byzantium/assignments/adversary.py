"""The omniscient adversary of ByzShield (spec §1.5-§1.8): which ``q`` workers to corrupt.

Byzantine workers collude: every Byzantine copy of a file carries the same vector, so they win a
file's majority vote as soon as they hold ``r' = (r + 1) // 2`` of its ``r`` copies (for even ``r``
a tie of ``r / 2`` Byzantine copies counts as corrupted: the honest copies lose ties, as in the
authors' ``simulations.py``). For a Byzantine set ``S``,
``c(S)`` = number of such files; the adversary maximises it over ``|S| = q``:
``c_max(q) = max_{|S| = q} c(S)`` and ``epsilon = c_max / num_files`` (fraction of corrupted
voted gradients).

* :func:`worst_case` -- exact ``c_max`` with a maximising set: exhaustive search over all
  ``q``-subsets when there are few enough of them, else a branch and bound over the parallel
  classes with exact two-class tails and symmetry breaking (:mod:`._worst_case_search`); a 0/1
  integer program solved by HiGHS (``scipy.optimize.milp``) is available as a cross-check.
* :func:`spectral_bound` -- ByzShield's upper bound ``gamma(q)`` from the second eigenvalue of the
  normalised graph (§1.7).
* :func:`repetition_worst_case` -- the DETOX / fractional repetition closed form
  ``min(floor(q / r'), K / r)`` (§1.8, §2.3).
* :func:`random_placement_fraction` -- expected corrupted fraction for a uniformly random
  Byzantine set, ``P[Hypergeom(K, q, r) >= r']``, identical for every scheme with replication ``r``
  (§1.8 observation 2).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from typing import Iterable, Literal

import numpy as np

from ._worst_case_search import BranchAndBound, local_search
from .graph import Assignment, AssignmentError

__all__ = [
    "WorstCase",
    "worst_case",
    "corrupted_files",
    "corruption_counts",
    "second_eigenvalue",
    "spectral_bound",
    "spectral_bound_closed_form",
    "trivial_bound",
    "repetition_worst_case",
    "random_placement_fraction",
]

EXHAUSTIVE_LIMIT = 200_000  # q-subsets; above this "auto" switches to the branch and bound
_BATCH = 8192  # subsets scored per numpy batch in the exhaustive search


@dataclass(frozen=True)
class WorstCase:
    """Result of :func:`worst_case`.

    ``workers``: a maximising Byzantine set (sorted, 0-based); ``files``: the files it corrupts
    (sorted); ``c_max = len(files)``; ``method``: ``"exhaustive"``, ``"bnb"`` or ``"milp"``; ``exact``: False
    only when the integer program stopped at its time limit before proving optimality (then
    ``c_max`` is a lower bound); ``seconds``: wall time of the search.
    """

    q: int
    workers: tuple[int, ...]
    files: tuple[int, ...]
    c_max: int
    num_files: int
    method: str
    exact: bool = True
    seconds: float = field(default=0.0, compare=False)

    @property
    def epsilon(self) -> float:
        """``c_max / num_files``: worst-case fraction of corrupted voted gradients."""
        return self.c_max / self.num_files


def _check_q(fn: str, a: Assignment, q: int) -> int:
    if isinstance(q, bool) or not isinstance(q, (int, np.integer)):
        raise AssignmentError(f"{fn}: q must be an integer, got q={q!r}")
    if not 0 <= q <= a.K:
        raise AssignmentError(f"{fn}: q must satisfy 0 <= q <= K, got q={q}, K={a.K}")
    return int(q)


def corruption_counts(a: Assignment, workers: Iterable[int]) -> np.ndarray:
    """Number of copies of each file held by ``workers`` (``(num_files,)`` int array)."""
    S = sorted(set(int(w) for w in workers))
    if S and (S[0] < 0 or S[-1] >= a.K):
        raise AssignmentError(f"corruption_counts: workers must lie in [0, {a.K}), got {S}")
    return a.biadjacency()[S].sum(axis=0, dtype=np.int64)


def corrupted_files(a: Assignment, workers: Iterable[int]) -> tuple[int, ...]:
    """Files whose majority a colluding set ``workers`` wins (``>= r'`` copies); spec §1.5 step 3."""
    counts = corruption_counts(a, workers)
    return tuple(int(i) for i in np.flatnonzero(counts >= a.r_majority))


# ---------------------------------------------------------------------------------------------
# exact search


def _exhaustive(a: Assignment, q: int) -> tuple[tuple[int, ...], int]:
    """Score every ``q``-subset in lexicographic order; return the first (lexicographically
    smallest) maximiser. ``counts = A[subset].sum`` per batch of subsets, vectorised in numpy."""
    A = a.biadjacency().astype(np.int16)
    rp = a.r_majority
    best_c, best_set = -1, ()
    combos = itertools.combinations(range(a.K), q)
    dtype = np.int8 if a.K < 128 else np.int16
    while True:
        chunk = np.fromiter(itertools.chain.from_iterable(itertools.islice(combos, _BATCH)),
                            dtype=dtype)
        if chunk.size == 0:
            break
        idx = chunk.reshape(-1, q).astype(np.intp)
        counts = A[idx].sum(axis=1)  # (batch, num_files)
        c = (counts >= rp).sum(axis=1)
        j = int(np.argmax(c))
        if c[j] > best_c:
            best_c, best_set = int(c[j]), tuple(int(w) for w in idx[j])
    return best_set, best_c


@lru_cache(maxsize=16)
def _group(a: Assignment) -> np.ndarray:
    """The symmetry group used by the search (cached: a table over q repeats it). Equal graphs
    share an entry; any automorphisms of the graph are valid for it."""
    return a.symmetry_group(max_size=4096)


def _bnb(a: Assignment, q: int, restarts: int = 40) -> tuple[tuple[int, ...], int, int]:
    """Exact search of :mod:`._worst_case_search` from a local-search incumbent; returns
    (maximiser, c_max, nodes visited)."""
    A = a.biadjacency()
    inc = local_search(A, q, a.r_majority, restarts)
    bb = BranchAndBound(A, a.r_majority, q, inc, _group(a))
    S, c = bb.run()
    return S, c, bb.nodes


def _milp(a: Assignment, q: int, time_limit: float | None) -> tuple[tuple[int, ...], int, bool]:
    """0/1 integer program (spec §1.5 "my tool"), tightened with cover inequalities.

    Variables ``x_w`` (worker Byzantine) and ``y_i`` (file corrupted); maximise ``sum y`` subject to
    ``sum x = q`` and, for each file ``i`` and each set ``T`` of ``r - r' + 1`` of its workers,
    ``y_i <= sum_{w in T} x_w`` (if all of ``T`` is honest, at most ``r' - 1`` copies are
    Byzantine). These covers describe the convex hull of each file's "at least ``r'`` of ``r``"
    condition, so the LP relaxation is much tighter than with the aggregated form
    ``r' y_i <= sum_{w in i} x_w`` (which they imply). No symmetry breaking is added: HiGHS
    detects the graph's symmetries itself, and a hand-made constraint would have to be proven
    exact for every construction. The returned set is the solver's optimum -- deterministic for a
    given assignment and scipy/HiGHS version, but not necessarily the lexicographically smallest
    maximiser.
    """
    from scipy.sparse import coo_matrix

    from ._milp_process import SolverCrashed, solve

    K, F, r, rp = a.K, a.num_files, a.r, a.r_majority
    rows, cols, vals = [], [], []
    n = 0
    for i, ws in enumerate(a.workers_of):
        for T in itertools.combinations(ws, r - rp + 1):
            rows.append(n); cols.append(K + i); vals.append(1.0)
            for w in T:
                rows.append(n); cols.append(w); vals.append(-1.0)
            n += 1
    # the cardinality constraint
    for w in range(K):
        rows.append(n); cols.append(w); vals.append(1.0)
    M = coo_matrix((vals, (rows, cols)), shape=(n + 1, K + F)).tocsr()
    lb = np.full(n + 1, -np.inf); ub = np.zeros(n + 1)
    lb[n] = ub[n] = q
    c = np.concatenate([np.zeros(K), -np.ones(F)])
    options = {"disp": False}
    if time_limit is not None:
        options["time_limit"] = float(time_limit)
    try:
        res = solve(c, np.ones(K + F), 0.0, 1.0, M, lb, ub, options)
    except SolverCrashed as e:
        raise RuntimeError(
            f"worst_case(method='milp'): {e} (K={K}, q={q}); HiGHS has known crashes of this kind. "
            "method='bnb' (or the default 'auto') gives the exact result without it") from None
    if res["x"] is None:
        raise RuntimeError(f"worst_case: the integer program failed ({res['message']})")
    x = np.round(res["x"][:K]).astype(int)
    S = tuple(int(w) for w in np.flatnonzero(x))
    if len(S) != q:  # cannot happen for a feasible solution; guard against solver tolerance
        raise RuntimeError(f"worst_case: integer program returned {len(S)} workers, expected {q}")
    exact = res["status"] == 0
    return S, len(corrupted_files(a, S)), exact


def worst_case(
    a: Assignment,
    q: int,
    *,
    method: Literal["auto", "exhaustive", "bnb", "milp"] = "auto",
    max_subsets: int = EXHAUSTIVE_LIMIT,
    time_limit: float | None = None,
) -> WorstCase:
    """Exact worst-case Byzantine set of size ``q`` for assignment ``a`` (spec §1.5).

    Methods (all exact):

    * ``"exhaustive"``: all ``C(K, q)`` subsets, vectorised; returns the lexicographically
      smallest maximiser, like the authors' brute force.
    * ``"bnb"``: branch and bound over parallel classes with symmetry breaking
      (:class:`~byzantium.assignments._worst_case_search.BranchAndBound`) from a local-search
      incumbent; returns the first strictly better set the search meets, or the incumbent when
      nothing beats it (deterministic).
    * ``"milp"``: 0/1 integer program solved by HiGHS (:func:`_milp`); kept as an independent
      cross-check. ``time_limit`` (seconds) applies to it only; if it fires the result has
      ``exact=False``. HiGHS runs in a child process (:mod:`._milp_process`): where it crashes
      (scipy 1.17 on mols(8, 5), mols(9, 4), mols(9, 5)) this raises ``RuntimeError`` instead
      of killing the interpreter.
    * ``"auto"`` (default): exhaustive when ``C(K, q) <= max_subsets``, else branch and bound.
    """
    q = _check_q("worst_case", a, q)
    if method not in ("auto", "exhaustive", "bnb", "milp"):
        raise AssignmentError(
            f"worst_case: method must be 'auto', 'exhaustive', 'bnb' or 'milp', got {method!r}"
        )
    t0 = time.perf_counter()
    exact = True
    if q == 0:
        S, used = (), "exhaustive"
    elif method == "exhaustive" or (method == "auto" and math.comb(a.K, q) <= max_subsets):
        S, _ = _exhaustive(a, q)
        used = "exhaustive"
    elif method in ("auto", "bnb"):
        S, _, _ = _bnb(a, q)
        used = "bnb"
    else:
        S, _, exact = _milp(a, q, time_limit)
        used = "milp"
    files = corrupted_files(a, S)
    return WorstCase(q, S, files, len(files), a.num_files, used, exact, time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------
# bounds and closed forms


def second_eigenvalue(a: Assignment) -> float:
    """``mu_1``: second largest eigenvalue of ``H H^T`` with ``H = A / sqrt(l r)`` (the largest is
    1), i.e. ``sigma_2(A)^2 / (l r)``. Equals ``1/r`` for MOLS, Ramanujan Case 1 and Case 2 with
    ``s | m`` (spec §1.2-§1.3)."""
    sv = np.linalg.svd(a.biadjacency().astype(np.float64), compute_uv=False)
    s2 = sv[1] if len(sv) > 1 else 0.0
    return float(s2 * s2 / (a.l * a.r))


def spectral_bound(a: Assignment, q: int, mu1: float | None = None) -> float:
    """ByzShield's upper bound ``gamma(q) >= c_max(q)`` (spec §1.7), for odd ``r >= 3``.

    Expansion: any ``q`` workers touch at least ``beta = (q l / r) / (mu_1 + (1 - mu_1) q / K)``
    files. Counting: the ``q l`` Byzantine copies cover every touched file once and every corrupted
    one ``r'`` times, so ``c r' + (|N| - c) <= q l`` and ``c <= (q l - beta) / ((r - 1) / 2)``.
    Returned as a float (not floored, not capped at ``num_files``); ``mu1`` defaults to
    :func:`second_eigenvalue`.
    """
    q = _check_q("spectral_bound", a, q)
    if a.r < 3 or a.r % 2 == 0:
        raise AssignmentError(
            f"spectral_bound: needs odd replication r >= 3 (majority vote), got r={a.r}"
        )
    if q == 0:
        return 0.0
    mu = second_eigenvalue(a) if mu1 is None else float(mu1)
    beta = (q * a.l / a.r) / (mu + (1.0 - mu) * q / a.K)
    return (q * a.l - beta) / ((a.r - 1) / 2)


def spectral_bound_closed_form(K: int, r: int, q: int, l: float | None = None) -> float:
    """:func:`spectral_bound` when ``mu_1 = 1/r``: ``gamma = 2 q^2 l / (K alpha)`` with
    ``alpha = 1 + (r - 1) q / K``.

    ``l`` defaults to ``K / r`` (``num_files = l^2``: MOLS, Ramanujan case 1 and case 2 with
    ``m = s``), which gives the spec's ``2 q^2 K / (r (K + (r - 1) q))`` (§1.7). Ramanujan case 2
    with ``s | m`` also has ``mu_1 = 1/r`` but ``l = m > K / r``: pass ``l``.
    """
    lv = K / r if l is None else float(l)
    alpha = 1.0 + (r - 1) * q / K
    return 2.0 * q * q * lv / (K * alpha)


def trivial_bound(a: Assignment, q: int) -> float:
    """``delta(q) = q l / r'``: each corrupted file takes ``r'`` of the ``q l`` Byzantine copies."""
    q = _check_q("trivial_bound", a, q)
    return q * a.l / a.r_majority


def repetition_worst_case(K: int, r: int, q: int) -> int:
    """Worst-case corrupted groups of DETOX / DRACO fractional repetition: ``min(floor(q/r'), K/r)``.

    The omniscient adversary fills groups with ``r' = (r+1)//2`` Byzantines each (DETOX's "worst"
    attack, spec §1.5 / §2.3); ``epsilon_DETOX = this / (K / r)``.
    """
    for name, v, lo in (("K", K, 1), ("r", r, 1), ("q", q, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise AssignmentError(f"repetition_worst_case: {name} must be an integer >= {lo}, "
                                  f"got {name}={v!r}")
    if K % r:
        raise AssignmentError(f"repetition_worst_case: r must divide K, got K={K}, r={r}")
    if q > K:
        raise AssignmentError(f"repetition_worst_case: q must satisfy q <= K, got q={q}, K={K}")
    return min(q // ((r + 1) // 2), K // r)


def random_placement_fraction(K: int, r: int, q: int, exact: bool = False) -> float | Fraction:
    """Expected corrupted fraction for a uniformly random ``q``-set: ``P[Hypergeom(K, q, r) >= r']``.

    Each file's ``r`` workers are a fixed ``r``-set, so the number of Byzantine ones is
    hypergeometric whatever the scheme; by linearity the mean of ``c(S)/num_files`` over all
    ``q``-sets is this probability (spec §1.8 obs. 2, §1.10). ``exact=True`` returns a Fraction.
    """
    for name, v, lo in (("K", K, 1), ("r", r, 1), ("q", q, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise AssignmentError(f"random_placement_fraction: {name} must be an integer >= "
                                  f"{lo}, got {name}={v!r}")
    if r > K or q > K:
        raise AssignmentError(
            f"random_placement_fraction: needs r <= K and q <= K, got K={K}, r={r}, q={q}"
        )
    rp = (r + 1) // 2
    num = sum(math.comb(q, k) * math.comb(K - q, r - k) for k in range(rp, r + 1))
    p = Fraction(num, math.comb(K, r))
    return p if exact else float(p)
