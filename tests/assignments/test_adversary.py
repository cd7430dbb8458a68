"""The omniscient adversary: exhaustive == branch and bound == ILP == independent brute force,
closed forms, the spectral bound and the random-placement identity (spec §1.5-§1.10); the
branch and bound's parts, exact tails and sorting network against brute force."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from byzantium.assignments import (
    Assignment,
    AssignmentError,
    baseline,
    corrupted_files,
    cyclic,
    mols,
    ramanujan,
    random_placement_fraction,
    repetition,
    repetition_worst_case,
    second_eigenvalue,
    spectral_bound,
    spectral_bound_closed_form,
    trivial_bound,
    worst_case,
)
from byzantium.assignments._worst_case_search import (
    BranchAndBound,
    _tail_alive,
    parallel_parts,
    sort_desc,
    sorting_network,
)


def brute_force(a: Assignment, q: int) -> int:
    """Plain-Python reference: every q-subset, counting copies file by file (no numpy)."""
    rp = (a.r + 1) // 2
    best = 0
    for S in itertools.combinations(range(a.K), q):
        s = set(S)
        c = sum(1 for ws in a.workers_of if sum(w in s for w in ws) >= rp)
        best = max(best, c)
    return best


def random_biregular(K: int, l: int, r: int, rng: np.random.Generator) -> Assignment:
    """A random simple biregular bipartite graph (configuration model with rejection)."""
    F = K * l // r
    while True:
        stubs = rng.permutation(np.repeat(np.arange(F), r))
        files_of = [stubs[w * l:(w + 1) * l] for w in range(K)]
        if all(len(set(fs.tolist())) == l for fs in files_of):
            return Assignment(K, F, tuple(tuple(sorted(int(i) for i in fs)) for fs in files_of))


def random_net(r: int, n: int, l: int, rng: np.random.Generator) -> Assignment:
    """``r`` parallel classes of ``n`` workers, each class a random partition of the ``n * l``
    files into blocks of ``l``: a biregular graph (replication ``r``) whose parts the search
    finds, where two workers of different classes may share several files."""
    F = n * l
    files_of = []
    for _ in range(r):
        perm = rng.permutation(F)
        files_of += [tuple(sorted(int(i) for i in perm[w * l:(w + 1) * l])) for w in range(n)]
    return Assignment(r * n, F, tuple(files_of))


# K = 15, r = 3 (MOLS l=5 and Ramanujan case 1 m=3, s=5): exact c_max for q = 1..7
C_MAX_15 = [0, 1, 3, 5, 8, 12, 14]


@pytest.mark.parametrize("make", [lambda: mols(5, 3), lambda: ramanujan(3, 5)])
def test_k15_table_and_methods_agree(make) -> None:
    a = make()
    for q, expect in zip(range(1, 8), C_MAX_15):
        ex = worst_case(a, q, method="exhaustive")
        bb = worst_case(a, q, method="bnb")
        assert ex.c_max == bb.c_max == expect, q
        assert ex.method == "exhaustive" and bb.method == "bnb" and ex.exact and bb.exact
        for res in (ex, bb):
            assert len(res.workers) == q and list(res.workers) == sorted(set(res.workers))
            assert res.files == corrupted_files(a, res.workers)
            assert res.epsilon == expect / 25
    # the ILP agrees too (a few q only: HiGHS is the slow one)
    for q in (2, 4, 6):
        assert worst_case(a, q, method="milp").c_max == C_MAX_15[q - 1]


def test_exhaustive_is_lexicographically_smallest_and_deterministic() -> None:
    a = mols(5, 3)
    res = worst_case(a, 2, method="exhaustive")
    assert res.workers == (0, 5) and res.files == (0,)  # first maximiser: ranks {1, 6}
    first = next(S for S in itertools.combinations(range(15), 4)
                 if len(corrupted_files(a, S)) == C_MAX_15[3])
    assert worst_case(a, 4).workers == first
    assert worst_case(a, 9, method="bnb") == worst_case(a, 9, method="bnb")


@pytest.mark.parametrize("make", [
    lambda: ramanujan(3, 3), lambda: ramanujan(4, 3), lambda: ramanujan(6, 3),
    lambda: mols(4, 3), lambda: mols(3, 2), lambda: repetition(12, 3), lambda: cyclic(9, 1),
    lambda: cyclic(8, 2), lambda: baseline(8),
])
def test_all_methods_equal_brute_force_on_small_constructions(make) -> None:
    a = make()
    for q in range(0, a.K + 1):
        ref = brute_force(a, q)
        assert worst_case(a, q, method="exhaustive").c_max == ref, q
        assert worst_case(a, q, method="bnb").c_max == ref, q
    for q in range(1, a.K, 3):
        assert worst_case(a, q, method="milp").c_max == brute_force(a, q), q


def test_random_graphs_ilp_and_bnb_never_beat_brute_force() -> None:
    rng = np.random.default_rng(1234)
    shapes = [(8, 3, 2), (9, 3, 3), (10, 3, 3), (12, 2, 3), (10, 5, 5), (9, 4, 3)]
    for K, l, r in shapes:
        a = random_biregular(K, l, r, rng)
        ref = {q: brute_force(a, q) for q in range(1, K)}
        for q in range(1, K):
            assert worst_case(a, q, method="exhaustive").c_max == ref[q]
            assert worst_case(a, q, method="bnb").c_max == ref[q]
        for q in (2, K // 2, K - 2):
            res = worst_case(a, q, method="milp")
            assert res.c_max == ref[q] and res.exact
            assert len(corrupted_files(a, res.workers)) == res.c_max


def test_bnb_matches_exhaustive_on_k35() -> None:
    a = mols(7, 5)
    for q in (4, 5):
        assert worst_case(a, q, method="bnb").c_max == worst_case(a, q, method="exhaustive").c_max
    # a harder q where only the branch and bound is fast; its set really corrupts c_max files
    res = worst_case(a, 10)
    assert res.method == "bnb" and res.c_max == 11
    assert len(corrupted_files(a, res.workers)) == 11


def test_edge_q_and_errors() -> None:
    a = mols(5, 3)
    assert worst_case(a, 0).c_max == 0 and worst_case(a, 0).workers == ()
    full = worst_case(a, 15)
    assert full.c_max == 25 and full.workers == tuple(range(15))
    with pytest.raises(AssignmentError, match=r"0 <= q <= K, got q=16, K=15"):
        worst_case(a, 16)
    with pytest.raises(AssignmentError, match="q must satisfy"):
        worst_case(a, -1)
    with pytest.raises(AssignmentError, match="method must be"):
        worst_case(a, 2, method="greedy")  # type: ignore[arg-type]
    with pytest.raises(AssignmentError, match="odd replication"):
        spectral_bound(repetition(8, 2), 2)
    with pytest.raises(AssignmentError, match="r must divide K"):
        repetition_worst_case(10, 3, 2)
    with pytest.raises(AssignmentError, match="q <= K"):
        repetition_worst_case(9, 3, 10)
    with pytest.raises(AssignmentError, match="needs r <= K and q <= K"):
        random_placement_fraction(5, 3, 6)


@pytest.mark.parametrize("K,r", [(15, 3), (25, 5), (21, 7), (12, 3), (45, 3), (45, 5)])
def test_detox_closed_form_is_the_exact_worst_case(K: int, r: int) -> None:
    a = repetition(K, r)
    for q in range(0, K + 1, 1 if K <= 15 else (3 if K <= 25 else 5)):
        assert worst_case(a, q).c_max == repetition_worst_case(K, r, q), q
    assert repetition_worst_case(15, 3, 15) == 5  # capped at K/r groups


def test_spectral_bound() -> None:
    for a in (mols(5, 3), ramanujan(3, 5), ramanujan(5, 5), ramanujan(10, 5), mols(4, 3)):
        assert math.isclose(second_eigenvalue(a), 1 / a.r, rel_tol=1e-9)
        for q in range(1, a.K // 2 + 1):
            g = spectral_bound(a, q)
            assert math.isclose(g, spectral_bound_closed_form(a.K, a.r, q, a.l), rel_tol=1e-9)
            if a.l * a.r == a.K:  # num_files = l^2: the spec's form without l
                assert math.isclose(g, spectral_bound_closed_form(a.K, a.r, q), rel_tol=1e-9)
            c = worst_case(a, q).c_max
            assert c <= g + 1e-9 and c <= trivial_bound(a, q)
    # a non-1/r spectrum (case 2 with s not dividing m) still bounds the exact values
    b = ramanujan(4, 3)
    assert not math.isclose(second_eigenvalue(b), 1 / 3)
    for q in range(1, 9):
        assert worst_case(b, q).c_max <= spectral_bound(b, q) + 1e-9
    assert spectral_bound(mols(5, 3), 0) == 0.0
    # spec §1.7 closed form, hand-computed: K=15, r=3, q=3: 2*9*15/(3*(15+6)) = 30/7
    assert math.isclose(spectral_bound(mols(5, 3), 3), 30 / 7)


def test_random_placement_values() -> None:
    # spec §1.8 obs. 2: K=15, r=3, q=1..7
    expect = [0, 0.0286, 0.0813, 0.1538, 0.2418, 0.3407, 0.4462]
    got = [random_placement_fraction(15, 3, q) for q in range(1, 8)]
    assert np.allclose(got, expect, atol=5e-5)
    assert random_placement_fraction(15, 3, 2, exact=True) == Fraction(13, 455)


@pytest.mark.parametrize("make", [lambda: mols(5, 3), lambda: ramanujan(3, 3),
                                  lambda: repetition(9, 3), lambda: cyclic(7, 1),
                                  lambda: ramanujan(4, 3), lambda: mols(3, 2)])
def test_random_placement_identity(make) -> None:
    """Mean of c(S)/f over all q-subsets == P[Hypergeom(K, q, r) >= r'] exactly (§1.10)."""
    a = make()
    A = a.biadjacency().astype(np.int64)
    for q in range(0, a.K + 1):
        subsets = np.array(list(itertools.combinations(range(a.K), q)), dtype=np.int64)
        if q == 0:
            total = 0
        else:
            counts = A[subsets].sum(axis=1)
            total = int((counts >= a.r_majority).sum())
        mean = Fraction(total, math.comb(a.K, q) * a.num_files)
        assert mean == random_placement_fraction(a.K, a.r, q, exact=True), q


def test_bnb_beyond_64_workers_uses_the_sorting_symmetry_test() -> None:
    """K > 62 does not fit the bitmask symmetry test: the sort-based one must agree."""
    assert worst_case(baseline(64), 5, method="bnb").c_max == 5
    assert worst_case(repetition(66, 3), 7, method="bnb").c_max == repetition_worst_case(66, 3, 7)
    a = cyclic(64, 1)
    assert worst_case(a, 4, method="bnb").c_max == worst_case(a, 4, method="exhaustive").c_max


def test_symmetry_group() -> None:
    a = mols(5, 3)
    G = a.symmetry_group()
    assert G.shape == (600, 15) and (G[0] == np.arange(15)).all()  # AGL(2,5) stabiliser
    assert len({tuple(g) for g in G.tolist()}) == 600
    comp = {tuple(g[h]) for g in G[:20] for h in G[:20]}  # closed under composition
    assert comp <= {tuple(g) for g in G.tolist()}
    assert len(cyclic(7, 2).symmetry_group()) == 14  # dihedral group of the cycle
    assert len(ramanujan(3, 3).symmetry_group(max_size=10)) == 10  # capped


@pytest.mark.parametrize("make", [lambda: mols(5, 3), lambda: ramanujan(3, 3),
                                  lambda: ramanujan(5, 5)])
def test_byzshield_never_worse_than_detox(make) -> None:
    """Spec §1.8 obs. 1: eps_ByzShield <= eps_DETOX for every q (ties allowed, e.g. K=9, q=3)."""
    a = make()
    groups = a.K // a.r
    for q in range(1, (a.K - 1) // 2 + 1):
        eps_bs = worst_case(a, q).epsilon
        assert eps_bs <= repetition_worst_case(a.K, a.r, q) / groups + 1e-12, q


def test_sorting_network_sorts_every_length() -> None:
    rng = np.random.default_rng(7)
    for n in range(1, 17):
        x = rng.integers(-3, 4, size=(n, 200)).astype(np.float32)  # many ties
        out = np.stack(sort_desc(list(x.copy())))
        assert np.array_equal(out, -np.sort(-x, axis=0)), n
        assert all(0 <= i < j < n for i, j in sorting_network(n))
    assert len(sorting_network(8)) == 19  # Batcher's network on 8 inputs


def test_parallel_parts_are_the_classes() -> None:
    for a, size, count in ((mols(7, 4), 7, 4), (ramanujan(3, 5), 5, 3), (ramanujan(5, 3), 3, 3)):
        parts = parallel_parts(a.biadjacency())
        assert [len(p) for p in parts] == [size] * count
        assert np.array_equal(np.concatenate(parts), np.arange(a.K))
    # repetition: a group's workers share its file; only a group's last and the next's first
    # are disjoint
    assert [len(p) for p in parallel_parts(repetition(9, 3).biadjacency())] == [1, 1, 2, 1, 2, 1, 1]
    assert [len(p) for p in parallel_parts(baseline(25).biadjacency())] == [10, 10, 5]


@pytest.mark.parametrize("shape", [(3, 4, 3), (4, 3, 3), (3, 5, 2), (5, 3, 2), (4, 4, 2)])
def test_branch_and_bound_pieces_equal_brute_force_on_random_nets(shape) -> None:
    """Exact two-part tails with and without their bound, the three-part enumeration, closing
    children and split parts, in several combinations: always the brute-force c_max, with a
    set that achieves it (the symmetry test is covered by the MOLS / Ramanujan cases above)."""
    r, n, l = shape
    a = random_net(r, n, l, np.random.default_rng(sum(shape)))
    A = a.biadjacency()
    group = a.symmetry_group()
    for q in range(1, a.K):
        ref = brute_force(a, q)
        for enum_first, max_part, bound in ((0, 10, True), (3, 10, True), (10, 10, True),
                                            (3, 2, True), (3, 10, False)):
            bb = BranchAndBound(A, a.r_majority, q, (tuple(range(q)), -1), group,
                                enum_first=enum_first, max_part=max_part, tail_bound=bound)
            S, c = bb.run()
            assert c == ref, (shape, q, enum_first, max_part, bound)
            assert len(S) == q and len(corrupted_files(a, S)) == c
        assert worst_case(a, q, method="bnb").c_max == ref


def test_tail_bound_never_cuts_a_better_completion() -> None:
    """The two-part bound keeps every tail whose best ``aE(U) + aG(W) + sum_{U x W}(M2 - M1)``
    (brute force over U, greedy W) exceeds the threshold, on random nonnegative data."""
    rng = np.random.default_rng(3)
    for _ in range(150):
        n, e, g = (int(v) for v in rng.integers(1, 7, size=3))
        b = int(rng.integers(0, e + g + 1))
        xs = np.arange(max(0, b - g), min(e, b) + 1)
        aE = rng.integers(0, 5, (n, e)).astype(np.float32)
        aG = rng.integers(0, 5, (n, g)).astype(np.float32)
        M1 = rng.integers(0, 2, (g, n, e)).astype(np.float32)  # (g, n, e) layout
        M2 = rng.integers(0, 3, (g, n, e)).astype(np.float32)
        best = np.full(n, -np.inf)
        for U in itertools.product([0, 1], repeat=e):
            U = np.array(U, dtype=np.float32)
            k = b - int(U.sum())
            if 0 <= k <= g:
                cols = aG + np.einsum("gne,e->ng", M2 - M1, U)
                best = np.maximum(best, aE @ U + -np.sort(-cols, axis=1)[:, :k].sum(axis=1))
        for need in (best - 0.5, best - 2.5):
            alive = _tail_alive(aE, aG, M2 - M1, M1, xs, b, need)
            assert set(np.flatnonzero(best > need)) <= set(alive.tolist())


def test_bnb_equals_ilp_on_mid_size_mols() -> None:
    for a, q in ((mols(5, 4), 9), (mols(7, 3), 8)):
        bb, ilp = worst_case(a, q, method="bnb"), worst_case(a, q, method="milp")
        assert ilp.exact and bb.c_max == ilp.c_max, (a, q)


@pytest.mark.parametrize("l,r,q,c", [(9, 5, 8, 8), (9, 5, 12, 16), (7, 6, 12, 18)])
def test_large_mols_values_and_the_set_really_corrupts_them(l: int, r: int, q: int, c: int
                                                            ) -> None:
    """K = 45 and K = 42 (values of the previous exact search); the returned set is checked
    file by file, independently of the search."""
    a = mols(l, r)
    res = worst_case(a, q)
    assert res.method == "bnb" and res.exact and res.c_max == c
    assert len(res.workers) == q and list(res.workers) == sorted(set(res.workers))
    won = [i for i, ws in enumerate(a.workers_of)
           if sum(w in res.workers for w in ws) >= (r + 1) // 2]
    assert tuple(won) == res.files and len(won) == c


def test_a_crash_inside_highs_is_an_error_not_a_dead_interpreter() -> None:
    """HiGHS runs in a child process: a child that dies becomes ``SolverCrashed`` (here a child
    fed a malformed program exits with a traceback), and the next call starts a fresh child."""
    from byzantium.assignments import _milp_process as mp

    with pytest.raises(mp.SolverCrashed, match="exit code 1"):
        mp.solve(np.ones(3), np.ones(3), 0.0, 1.0, np.ones((2, 5)), np.zeros(2), np.ones(2), {})
    a = mols(5, 3)
    assert worst_case(a, 4, method="milp").c_max == C_MAX_15[3]
    mp._child.proc.kill()  # a crash between two solves: the next one restarts the child
    mp._child.proc.wait()
    assert worst_case(a, 4, method="milp").c_max == C_MAX_15[3]


def test_milp_on_a_program_that_crashes_highs_raises_or_agrees_with_bnb() -> None:
    """mols(8, 5) at q = 3 kills HiGHS with SIGSEGV under scipy 1.17: worst_case must raise a clear
    RuntimeError naming the way out; a scipy whose HiGHS solves it must agree with the B&B."""
    a = mols(8, 5)
    try:
        res = worst_case(a, 3, method="milp", time_limit=30)
    except RuntimeError as e:
        assert "HiGHS solver process died" in str(e) and "method='bnb'" in str(e)
    else:
        assert res.c_max <= worst_case(a, 3).c_max and (not res.exact or res.c_max == worst_case(a, 3).c_max)
