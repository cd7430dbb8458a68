"""Exact ``c_max(q)`` by branch and bound over parallel classes (ByzShield spec §1.5).

Private engine of :func:`byzantium.assignments.worst_case` (``method="bnb"``). Notation: ``A`` is
the ``K x F`` 0/1 worker x file matrix, ``r' = (r + 1) // 2`` the copies a colluding set needs to
win a file; for a set ``S`` of workers ``cnt_i = |S n W_i|`` (``W_i``: the workers of file ``i``),
``k_i = r' - cnt_i`` (copies file ``i`` still needs) and ``c(S) = #{i : k_i <= 0}``. We want
``max_{|S| = q} c(S)`` with a maximiser.

**Parts.** ``range(K)`` is cut into runs of consecutive workers whose files are pairwise disjoint
(:func:`parallel_parts`). The constructions number workers class by class, so for MOLS the parts
are the ``r`` parallel classes of ``l`` lines (a Latin square's symbols), and likewise for both
Ramanujan cases; for fractional repetition, whose groups are consecutive, parts have one or two
workers and the search is close to a plain lexicographic branch and bound.

**Tree.** A node ``(P, s)`` is a sorted prefix ``P`` completed by ``b = q - |P|`` workers of index
``>= s``; ``s`` lies in part ``j`` and ``m`` parts remain (``j`` and the later ones). It branches
into ``(P + w, w + 1)`` for each ``w`` of part ``j`` and one *closing* child ``(P, end of j)``
(the rest of part ``j`` is skipped). Every ``q``-set is reached once, and all completions that
never touch part ``j`` again share one node. Per node, vectorised over batches:

1. *bound* (every node, :meth:`BranchAndBound._bound`): ``c(P)`` plus the ``b`` largest
   per-worker credits ``rho(w)``; the node is dropped when it cannot beat the incumbent.
2. *exact tail* (``m <= 2``, :meth:`BranchAndBound._solve_tail`): no more branching. Call the
   two parts ``E`` and ``G``; add ``U`` from ``E`` and ``W`` from ``G``. A file holds at most one
   worker of each part, so only files with ``k_i in {1, 2}`` can change, and the completion wins
   ``a_E(U) + a_G(W) + sum_{u in U, w in W} D_uw`` more files, where ``a_X(w)`` counts the
   ``k_i = 1`` files of ``w`` and ``D_uw`` is (``k_i = 2`` files) minus (``k_i = 1`` files)
   shared by ``u`` and ``w`` (a ``k_i = 1`` file on both is counted once). For each of the
   ``2^|E|`` subsets ``U`` the best ``W`` of each size is the largest column sums: exact. Before
   that, cheap row/column relaxations of the same expression (:func:`_tail_alive`) discard the
   tails that cannot beat the incumbent (most of them: the typical tail is several files short).
3. *three parts, few left in the first* (``m = 3``, at most ``ENUM_FIRST`` workers left in part
   ``j``, :meth:`BranchAndBound._solve_tail3`): every subset of them, then step 2 (exact).

**Symmetry breaking** (orderly generation): a prefix is kept only if it is the lexicographically
smallest image of itself under every automorphism in the given group (or a subset of it). The
lexicographically smallest set of every orbit passes, and so do its prefixes (if ``g(P) < P`` for
a prefix ``P`` formed by the smallest elements of ``S`` then ``g(S) < S``), so every orbit of
optimal sets keeps a representative; steps 2-3 cover every completion of a kept prefix.
"""

from __future__ import annotations

from functools import lru_cache
from math import comb

import numpy as np

MAX_PART = 10  # longest part (a tail enumerates 2^|part| subsets of the smaller of two parts)
ENUM_FIRST = 3  # three parts left, at most this many workers in the first: enumerate them
_CELLS = 4_000_000  # entries per numpy temporary (memory cap for the vectorised steps)


def local_search(A: np.ndarray, q: int, rp: int, restarts: int, seed: int = 0
                 ) -> tuple[tuple[int, ...], int]:
    """Incumbent: best-swap hill climbing from ``restarts`` random ``q``-sets (fixed seed, so
    deterministic). Returns ``(sorted set, c)``."""
    K = A.shape[0]
    rng = np.random.default_rng(seed)
    A16 = A.astype(np.int16)
    best_c, best_S = -1, tuple(range(q))
    for _ in range(restarts):
        S = [int(w) for w in rng.choice(K, q, replace=False)]
        cnt = A16[S].sum(axis=0)
        c = int((cnt >= rp).sum())
        improved = True
        while improved:
            improved = False
            inS = np.zeros(K, dtype=bool)
            inS[S] = True
            for t, w_out in enumerate(S):
                cand = (cnt - A16[w_out])[None, :] + A16  # (K, F): swap w_out for each worker
                cs = (cand >= rp).sum(axis=1)
                cs[inS] = -1
                w_in = int(np.argmax(cs))
                if cs[w_in] > c:
                    S[t], cnt, c, improved = w_in, cand[w_in], int(cs[w_in]), True
                    break
        if c > best_c:
            best_c, best_S = c, tuple(sorted(S))
    return best_S, best_c


def parallel_parts(A: np.ndarray, max_part: int = MAX_PART) -> list[np.ndarray]:
    """Cut ``range(K)`` into runs of consecutive workers with pairwise disjoint files, each at
    most ``max_part`` long (a run ends before the first worker sharing a file with it)."""
    K = A.shape[0]
    A = A.astype(bool)
    parts, start = [], 0
    used = np.zeros(A.shape[1], dtype=bool)
    for w in range(K):
        if w > start and (w - start >= max_part or (used & A[w]).any()):
            parts.append(np.arange(start, w))
            start, used = w, np.zeros_like(used)
        used |= A[w]
    if K:
        parts.append(np.arange(start, K))
    return parts


@lru_cache(maxsize=64)
def _subsets(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ``2^n`` subsets of ``range(n)`` as a float32 0/1 matrix with rows grouped by size
    (sizes ``0, 1, ..., n``), the size of each row, and where each size group starts."""
    S = ((np.arange(2 ** n)[:, None] >> np.arange(n)[None, :]) & 1).astype(np.float32)
    sizes = S.sum(axis=1).astype(np.int64)
    order = np.argsort(sizes, kind="stable")
    S, sizes = S[order], sizes[order]
    return S, sizes, np.searchsorted(sizes, np.arange(n + 1))


@lru_cache(maxsize=64)
def sorting_network(n: int) -> tuple[tuple[int, int], ...]:
    """Comparators ``(i, j)``, ``i < j``, of Batcher's odd-even merge sort on ``n`` inputs:
    applying "``x_i, x_j = max, min``" in order sorts ``x`` in decreasing order. Built for the
    next power of two; comparators that touch a missing input are dropped (padding with
    ``-inf``, such a comparator never moves anything)."""
    size = 1
    while size < n:
        size *= 2
    out = []
    p = 1
    while p < size:  # merge sorted runs of length p into runs of length 2p
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    lo, hi = i + j, i + j + k
                    if lo // (2 * p) == hi // (2 * p) and hi < n:
                        out.append((lo, hi))
            k //= 2
        p *= 2
    return tuple(out)


def sort_desc(rows: list[np.ndarray]) -> list[np.ndarray]:
    """Sort element-wise across a short list of equally shaped arrays, largest first: a
    vectorised sorting network (much faster than ``np.sort`` along an axis of length ~10).
    Overwrites the arrays it is given."""
    rows = list(rows)
    for i, j in sorting_network(len(rows)):
        hi = np.maximum(rows[i], rows[j])
        np.minimum(rows[i], rows[j], out=rows[j])
        rows[i] = hi
    return rows


def _top_prefix(X: np.ndarray) -> np.ndarray:
    """``out[k]`` = element-wise sum of the ``k`` largest of ``X[0], X[1], ...`` (``k = 0 ..
    len(X)``), as a ``(len(X) + 1, ...)`` array."""
    out = np.zeros((len(X) + 1,) + X.shape[1:], dtype=X.dtype)
    for j, x in enumerate(sort_desc(list(np.array(X)))):
        np.add(out[j], x, out=out[j + 1])
    return out


def _capped_rows(cE: np.ndarray, Rt: np.ndarray, top_cols: np.ndarray, xs: np.ndarray,
                 ks: np.ndarray) -> np.ndarray:
    """Bound on ``max cE(U) + cG(W) + sum_{U x W} R`` over ``|U| = xs[i]``, ``|W| = ks[i]``,
    row by row: row ``u`` adds at most its ``ks[i]`` largest entries of ``R``. ``cE``:
    ``(n, e)``; ``Rt``: ``R`` as ``(g, n, e)``; ``top_cols``: :func:`_top_prefix` of ``cG``
    (``(n, g)``) as ``(g + 1, n)``. Returns ``(n, len(xs))``."""
    cap = _top_prefix(Rt)  # (g + 1, n, e): the best k entries of each row
    top = _top_prefix((cE[None] + cap[ks]).transpose(2, 1, 0))  # (e + 1, n, |xs|)
    return (top[xs, :, np.arange(len(xs))] + top_cols[ks]).T


def _tail_alive(aE: np.ndarray, aG: np.ndarray, Dt: np.ndarray, M1t: np.ndarray,
                xs: np.ndarray, b: int, need: np.ndarray) -> np.ndarray:
    """Indices of the tails whose best two-part completion gain, ``aE(U) + aG(W) + sum_{U x W}
    D`` with ``D = M2 - M1`` (``M_k[u, w]``: files with ``k_i = k`` shared by ``u`` and ``w``),
    may exceed ``need``. The bound at split ``|U| = x`` (``x`` in ``xs``), ``|W| = b - x``, is
    the smallest of four relaxations, each valid alone: rows or columns of ``R = M2``
    (:func:`_capped_rows`) after linearising the overlap term, ``-[u in U][w in W] <= 1 -
    [u in U] - [w in W]`` per need-1 file shared by ``u`` and ``w``; then rows or columns of
    ``R = D``. Each relaxation only runs on the tails the previous ones kept. Shapes ``(n, e)``,
    ``(n, g)``, ``(g, n, e)`` x 2, ``(n,)``."""
    ks = b - xs
    M2t = Dt + M1t
    m1_rows, m1_cols = M1t.sum(axis=0), M1t.sum(axis=2).T  # (n, e), (n, g)
    cE1, cG1 = aE - m1_rows, aG - m1_cols
    const = m1_rows.sum(axis=1)[:, None]

    def rowmu(a):
        return _capped_rows(cE1[a], M2t[:, a], _top_prefix(cG1[a].T), xs, ks) + const[a]

    def colmu(a):
        return (_capped_rows(cG1[a], M2t[:, a].transpose(2, 1, 0), _top_prefix(cE1[a].T),
                             ks, xs) + const[a])

    def row(a):
        return _capped_rows(aE[a], Dt[:, a], _top_prefix(aG[a].T), xs, ks)

    def col(a):
        return _capped_rows(aG[a], Dt[:, a].transpose(2, 1, 0), _top_prefix(aE[a].T), ks, xs)

    alive = np.arange(len(aE))
    ub = np.full((len(aE), len(xs)), np.inf, dtype=np.float32)
    for relax in (rowmu, colmu, row, col):
        ub[alive] = np.minimum(ub[alive], relax(alive))
        alive = alive[ub[alive].max(axis=1) > need[alive]]
        if not len(alive):
            break
    return alive


class BranchAndBound:
    """Exact ``max_{|S|=q} c(S)`` (module docstring).

    ``A``: ``K x F`` 0/1 matrix; ``rp``: copies needed to win a file; ``incumbent``: a feasible
    ``(sorted set, c)``; ``group``: ``(|G|, K)`` worker permutations (automorphisms of ``A``,
    identity first) for symmetry breaking. :meth:`run` returns a maximiser (sorted) and
    ``c_max``; deterministic."""

    CHILDREN = 16384  # children per batch (the symmetry test holds a (children, |G|) array)
    GROUP_WORK = 500_000  # children x group elements per symmetry test ...
    MIN_GROUP = 32  # ... but at least this many elements
    TAIL_BATCH = 2048  # prefixes per exact-tail pass

    def __init__(self, A: np.ndarray, rp: int, q: int, incumbent: tuple[tuple[int, ...], int],
                 group: np.ndarray, enum_first: int = ENUM_FIRST, max_part: int = MAX_PART,
                 tail_bound: bool = True) -> None:
        A = np.asarray(A)
        K, F = A.shape
        self.K, self.F, self.q, self.rp, self.enum_first = K, F, q, rp, enum_first
        self.tail_bound = tail_bound  # bound two-part tails before solving them
        self.A8 = A.astype(np.int8)
        self.Af = A.astype(np.float32)
        self.AT = np.ascontiguousarray(self.Af.T)
        co = A.astype(np.int64) @ A.T.astype(np.int64)
        np.fill_diagonal(co, 0)
        self.lam = float(co.max()) if K > 1 else 0.0  # most files two workers share
        suffix = np.cumsum(A[::-1].astype(np.int16), axis=0)[::-1]
        self.avail = np.vstack([suffix, np.zeros((1, F), np.int16)])  # copies at index >= s
        parts = parallel_parts(A, max_part)
        sizes = [len(p) for p in parts]
        self.part_start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.part_of = np.repeat(np.arange(len(parts)), sizes)  # part j: part_start[j] ...
        self.n_parts = len(parts)
        g = np.asarray(group, dtype=np.int64)
        self.group = g[1:] if len(g) > 1 else np.zeros((0, K), np.int64)
        self.use_bits = K <= 62
        if self.use_bits:
            # worker w is bit K-1-w, so integer order of masks is lexicographic order
            self.pow2 = np.left_shift(np.uint64(1), np.arange(K - 1, -1, -1, dtype=np.uint64))
            self.pow2gT = self.pow2[self.group].T.copy() if len(self.group) else None  # (K, |G|)
        S, c = incumbent
        self.best_S, self.best_c = tuple(sorted(int(w) for w in S)), int(c)
        self.nodes = 0  # nodes bounded or solved
        self.tails = 0  # prefixes given to the exact two-part solver
        self.tails_exact = 0  # ... of which the bound did not discard
        self._setup: dict[int, tuple[np.ndarray, np.ndarray, tuple]] = {}

    # -------------------------------------------------------------------- symmetry
    def _canonical(self, sets: np.ndarray) -> np.ndarray:
        """Rows of ``sets`` (sorted index tuples, ``K > 62``) that no group element maps to a
        lexicographically smaller tuple (sort-based test; rows leave the working set as soon as
        one element rejects them)."""
        keep = np.ones(len(sets), dtype=bool)
        alive, cur = np.arange(len(sets)), sets
        for g in self.group:
            img = np.sort(g[cur], axis=1)
            diff = img != cur
            first = diff.argmax(axis=1)
            rows = np.arange(len(cur))
            ok = ~(diff.any(axis=1) & (img[rows, first] < cur[rows, first]))
            if not ok.all():
                keep[alive[~ok]] = False
                alive, cur = alive[ok], cur[ok]
                if not len(alive):
                    break
        return keep

    def _canonical_children(self, parents: np.ndarray, p: np.ndarray, w: np.ndarray
                            ) -> np.ndarray:
        """Symmetry test of the children ``parents[p] + (w,)`` (``w`` > every parent element).
        With element ``w`` stored as bit ``K-1-w``, "``T < S`` as sorted tuples" (the smallest
        element of ``S ^ T`` lies in ``T``) is "``mask(T) > mask(S)``" as integers, and
        ``g(child) = g(parent) | g(w)``. Any subset of the group is a valid filter (the orbit's
        smallest set passes them all), so large batches use a prefix of it to bound the work."""
        if not len(self.group) or not len(p):
            return np.ones(len(p), dtype=bool)
        if not self.use_bits:
            return self._canonical(np.concatenate([parents[p], w[:, None]], axis=1))
        m = min(len(self.group), max(self.MIN_GROUP, self.GROUP_WORK // len(p)))
        table = self.pow2gT[:, :m]
        t = parents.shape[1]
        pimg = np.zeros((len(parents), m), dtype=np.uint64)  # images of the parents
        if t:
            step = max(1, _CELLS // (m * t))
            for lo in range(0, len(parents), step):
                pimg[lo:lo + step] = table[parents[lo:lo + step]].sum(axis=1, dtype=np.uint64)
        cmask = self.pow2[parents].sum(axis=1, dtype=np.uint64)[p] | self.pow2[w]
        return (pimg[p] | table[w]).max(axis=1) <= cmask

    # -------------------------------------------------------------------- bound
    def _bound(self, counts: np.ndarray, start: np.ndarray, b: int) -> np.ndarray:
        """``c(P) + sum of the b largest rho(w)`` over the candidates ``w >= start``.

        A file not yet won needs ``k`` more copies (and must have ``k`` candidates left); credit
        each newly won file ``1/k`` to each of ``k`` of its new workers. Worker ``w`` is credited
        at most ``pot_1(w)`` need-1 files plus, for need ``k >= 2``, ``m_k <= pot_k(w)`` files
        each needing ``k-1`` other new workers through ``w``; the other ``b-1`` new workers
        share at most ``lambda`` files with ``w`` each, so ``sum_k (k-1) m_k <= lambda (b-1)``,
        and ``rho(w)`` is the LP optimum of ``sum_k m_k / k`` under that budget (greedy by
        increasing ``k``). Never more than the number of completable files."""
        rp = self.rp
        cur = (counts >= rp).sum(axis=1)
        need = rp - counts.astype(np.int16)
        avail = self.avail[start]
        rho = np.zeros((len(start), self.K), dtype=np.float64)
        budget = np.full_like(rho, self.lam * (b - 1))
        n_pot = np.zeros(len(start), dtype=np.int64)
        for k in range(1, min(rp, b) + 1):
            pk = (need == k) & (avail >= k)
            n_pot += pk.sum(axis=1)
            potk = pk.astype(np.float32) @ self.AT  # (N, K)
            if k == 1:
                rho += potk
            else:
                take = np.minimum(potk, budget / (k - 1))
                budget -= take * (k - 1)
                rho += take / k
        rho[np.arange(self.K)[None, :] < start[:, None]] = -1.0  # only candidates may join
        top = -np.partition(-rho, b - 1, axis=1)[:, :b]
        return cur + np.minimum(np.maximum(top, 0.0).sum(axis=1), n_pot)

    # -------------------------------------------------------------------- exact tails
    def _tail_parts(self, s0: int) -> list[np.ndarray]:
        """Candidates (index ``>= s0``) by part: the rest of ``s0``'s part, then the later
        parts."""
        j0 = int(self.part_of[s0])
        return ([np.arange(s0, self.part_start[j0 + 1])]
                + [np.arange(self.part_start[j], self.part_start[j + 1])
                   for j in range(j0 + 1, self.n_parts)])

    def _tail_setup(self, s0: int) -> tuple[np.ndarray, np.ndarray, tuple]:
        """The two tail parts from ``s0`` (``E``: the smaller, enumerated; ``G``: filled
        greedily) and how to sum a per-file weight over the files each pair ``(u, w)`` shares:
        a file has at most one worker in each part, so the shared files, sorted by pair, are
        contiguous runs (cached per ``s0``)."""
        if s0 not in self._setup:
            parts = self._tail_parts(s0)
            if len(parts) == 1:
                E, G = np.zeros(0, np.int64), parts[0]
            elif len(parts[0]) <= len(parts[1]):
                E, G = parts
            else:
                G, E = parts
            inE, inG = self.A8[E].astype(bool), self.A8[G].astype(bool)
            files = np.flatnonzero(inE.any(axis=0) & inG.any(axis=0))
            pair = inG[:, files].argmax(axis=0) * len(E) + inE[:, files].argmax(axis=0)
            order = np.argsort(pair, kind="stable")
            files, pair = files[order], pair[order]
            starts = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]]) if len(pair) else pair
            self._setup[s0] = (E, G, (files, starts, pair[starts]))
        return self._setup[s0]

    def _pair_sums(self, f: np.ndarray, shared: tuple, e: int, g: int) -> np.ndarray:
        """``out[w, n, u] = sum of f[n, i]`` over the files ``i`` shared by ``E[u]`` and
        ``G[w]``, as a ``(g, n, e)`` array."""
        files, starts, pairs = shared
        out = np.zeros((len(f), g * e), dtype=np.float32)
        if len(starts) == len(files):  # at most one shared file per pair (MOLS, Ramanujan)
            out[:, pairs] = f[:, files]
        else:
            out[:, pairs] = np.add.reduceat(f[:, files], starts, axis=1)
        return out.reshape(len(f), g, e).transpose(1, 0, 2)

    def _queue_tail(self, sets: np.ndarray, counts: np.ndarray, s0: int, b: int) -> None:
        """Queue prefixes for :meth:`_solve_tail`, solved ``TAIL_BATCH`` at a time (one numpy
        pass instead of one per small group; the incumbent may rise a little later, which only
        costs pruning)."""
        queue = self._pending.setdefault((s0, b), [])
        queue.append((sets, counts))
        if sum(len(x[0]) for x in queue) >= self.TAIL_BATCH:
            self._flush((s0, b))

    def _flush(self, key: tuple[int, int]) -> None:
        queue = self._pending.pop(key, [])
        if queue:
            self._solve_tail(np.concatenate([x[0] for x in queue]),
                             np.concatenate([x[1] for x in queue]), *key)

    def _solve_tail(self, sets: np.ndarray, counts: np.ndarray, s0: int, b: int) -> None:
        """Best completion of every prefix in ``sets`` (completed from index ``s0`` on, at most
        two parts left); raises the incumbent when one beats it (module docstring, step 2)."""
        rp = self.rp
        E, G, shared = self._tail_setup(s0)
        e, g = len(E), len(G)
        self.tails += len(sets)
        cur = (counts >= rp).sum(axis=1)
        f1 = (counts == rp - 1).astype(np.float32)  # k_i = 1
        f12 = (counts == rp - 2).astype(np.float32) - f1  # [k_i = 2] - [k_i = 1]
        aG = f1 @ self.AT[:, G]  # (N, g)
        aE = f1 @ self.AT[:, E]  # (N, e)
        S, sizes, _ = _subsets(len(E))
        k = b - sizes  # workers taken from G after U
        ok = (k >= 0) & (k <= g)
        S, k = S[ok], k[ok]
        take = [(k > y).astype(np.float32) for y in range(g)]  # is the y-th best column taken?
        step = max(1, _CELLS // (len(S) * g + g * self.F + 1))
        xs = np.arange(max(0, b - g), min(e, b) + 1)  # feasible |U|
        for lo in range(0, len(sets), step):
            rows = np.arange(lo, min(lo + step, len(sets)))
            # D and the need-1 overlaps M1, transposed to (g, n, e):
            # D[u, w] = sum_i A[u, i] ([k_i = 2] - [k_i = 1]) A[w, i]
            Dt = self._pair_sums(f12[rows], shared, e, g)
            if e and self.tail_bound:
                M1t = self._pair_sums(f1[rows], shared, e, g)
                alive = _tail_alive(aE[rows], aG[rows], Dt, M1t, xs, b,
                                    self.best_c + 1 - 1e-4 - cur[rows])
                rows, Dt = rows[alive], Dt[:, alive, :]
                if not len(rows):
                    continue
            self.tails_exact += len(rows)
            srt = sort_desc(list(Dt @ S.T + aG[rows].T[:, :, None]))  # g x (n, U)
            val = aE[rows] @ S.T  # (n, U)
            for y in range(g):
                val += srt[y] * take[y]
            arg = val.argmax(axis=1)
            best = cur[rows] + val[np.arange(len(val)), arg]
            n = int(np.argmax(best))
            if round(float(best[n])) > self.best_c:
                u = arg[n]
                U = E[S[u] > 0]
                colu = aG[rows[n]] + S[u] @ Dt[:, n, :].T
                W = G[np.argsort(-colu, kind="stable")[:k[u]]]
                self.best_c = int(round(float(best[n])))
                self.best_S = tuple(sorted(int(w) for w in
                                           np.concatenate([sets[rows[n]], U, W])))

    def _solve_tail3(self, sets: np.ndarray, counts: np.ndarray, s0: int, b: int) -> None:
        """Three parts left, at most ``enum_first`` candidates ``X`` in the first: every subset
        ``U`` of ``X``, then the exact two-part tail of the rest."""
        X = self._tail_parts(s0)[0]
        s1 = int(X[-1]) + 1
        S, sizes, starts = _subsets(len(X))
        n = len(sets)
        for x in range(len(X) + 1):
            if x > b or b - x > self.K - s1:
                continue
            Us = S[starts[x]:starts[x] + comb(len(X), x)] > 0  # (nU, |X|)
            members = np.stack([X[u] for u in Us])  # (nU, x)
            add = Us.astype(np.int8) @ self.A8[X]  # (nU, F)
            nU = len(Us)
            self._queue_tail(
                np.concatenate([np.repeat(sets, nU, axis=0), np.tile(members, (n, 1))], axis=1),
                np.repeat(counts, nU, axis=0) + np.tile(add, (n, 1)), s1, b - x)

    # -------------------------------------------------------------------- search
    def run(self) -> tuple[tuple[int, ...], int]:
        if self.best_c < self.F and self.q > 0:
            self._pending: dict[tuple[int, int], list] = {}
            self._search()
            for key in list(self._pending):
                self._flush(key)
        return self.best_S, self.best_c

    def _search(self) -> None:
        """Depth first over batches of nodes ``(sets, counts, start)`` (module docstring)."""
        K, q, rp = self.K, self.q, self.rp
        ends = self.part_start[1:]
        stack = [(np.zeros((1, 0), np.int64), np.zeros((1, self.F), np.int8),
                  np.zeros(1, np.int64))]
        while stack:
            sets, counts, start = stack.pop()
            t = sets.shape[1]
            self.nodes += len(sets)
            if t == q:
                c = (counts >= rp).sum(axis=1)
                j = int(np.argmax(c))
                if c[j] > self.best_c:
                    self.best_c, self.best_S = int(c[j]), tuple(int(w) for w in sets[j])
                continue
            if self.best_c >= self.F:
                break
            b = q - t
            keep = np.floor(self._bound(counts, start, b) + 1e-6) > self.best_c
            sets, counts, start = sets[keep], counts[keep], start[keep]
            if not len(sets):
                continue
            m = self.n_parts - self.part_of[start]
            branch = np.ones(len(sets), dtype=bool)
            for s0 in np.unique(start[m <= 3]):
                rows = np.flatnonzero(start == s0)
                if m[rows[0]] <= 2:
                    self._queue_tail(sets[rows], counts[rows], int(s0), b)
                elif ends[self.part_of[s0]] - s0 <= self.enum_first:
                    self._solve_tail3(sets[rows], counts[rows], int(s0), b)
                else:
                    continue
                branch[rows] = False
            sets, counts, start = sets[branch], counts[branch], start[branch]
            if not len(sets):
                continue
            end = ends[self.part_of[start]]
            batches = []
            # closing children: same prefix, rest of the part skipped (room for b after it)
            close = (end < K) & (K - end >= b)
            if close.any():
                batches.append((sets[close], counts[close], end[close]))
            # in-part children: w in [start, end) with room for the b - 1 others after it
            hi_w = np.minimum(end - 1, K - b)
            nchild = np.cumsum(np.maximum(hi_w - start + 1, 0))
            if nchild[-1] > 0:
                cuts = np.searchsorted(nchild, np.arange(self.CHILDREN, nchild[-1],
                                                         self.CHILDREN), side="right")
                edges = np.unique(np.concatenate([[0], cuts, [len(sets)]]))
                nxt = np.arange(K)
                for lo, hi in reversed(list(zip(edges[:-1], edges[1:]))):
                    par = sets[lo:hi]
                    ok = (nxt[None, :] >= start[lo:hi, None]) & (nxt[None, :] <= hi_w[lo:hi, None])
                    p, w = np.nonzero(ok)
                    canon = self._canonical_children(par, p, w)
                    p, w = p[canon], w[canon]
                    if len(p):
                        batches.append((np.concatenate([par[p], w[:, None]], axis=1),
                                        counts[lo:hi][p] + self.A8[w], w + 1))
            # popped last first: in-part children in lexicographic order, closing children last
            stack.extend(batches)
