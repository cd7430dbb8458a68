"""Constructions: spec test vectors (§1.10), degrees, orthogonality, spectra, parameter errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from byzantium.assignments import (
    Assignment,
    AssignmentError,
    baseline,
    corrupted_files,
    cyclic,
    gf,
    latin_squares,
    mols,
    prime_power,
    ramanujan,
    repetition,
)


def ranks(a: Assignment, rank: int) -> tuple[int, ...]:
    """Files of 1-based MPI rank ``rank`` (spec §1.10 uses ranks)."""
    return a.files_of[rank - 1]


def file_ranks(a: Assignment, i: int) -> list[int]:
    return [w + 1 for w in a.workers_of[i]]


# ----------------------------------------------------------------------------- §1.10 vectors
def test_mols_5_3_test_vectors() -> None:
    a = mols(5, 3)
    assert (a.K, a.num_files, a.l, a.r) == (15, 25, 5, 3)
    assert ranks(a, 1) == (0, 9, 13, 17, 21)
    assert ranks(a, 2) == (1, 5, 14, 18, 22)
    assert ranks(a, 5) == (4, 8, 12, 16, 20)
    assert ranks(a, 6) == (0, 8, 11, 19, 22)
    assert ranks(a, 11) == (0, 7, 14, 16, 23)
    assert ranks(a, 15) == (4, 6, 13, 15, 22)
    assert file_ranks(a, 0) == [1, 6, 11]
    assert file_ranks(a, 5) == [2, 8, 14]
    assert corrupted_files(a, [0, 5]) == (0,)  # Byzantine ranks {1, 6}


def test_ramanujan_case1_test_vectors() -> None:
    a = ramanujan(3, 5)
    assert a.param_dict["case"] == 1
    assert (a.K, a.num_files, a.l, a.r) == (15, 25, 5, 3)
    assert ranks(a, 1) == (0, 5, 10, 15, 20)
    assert ranks(a, 6) == (0, 6, 12, 18, 24)
    assert ranks(a, 11) == (0, 7, 14, 16, 23)
    assert file_ranks(a, 5) == [1, 10, 14]
    assert a.files_of[10:15] == mols(5, 3).files_of[10:15]  # ranks 11-15 coincide with MOLS


def test_ramanujan_case2_test_vectors() -> None:
    a = ramanujan(3, 3)
    assert a.param_dict["case"] == 2
    assert (a.K, a.num_files, a.l, a.r) == (9, 9, 3, 3)
    assert ranks(a, 1) == (0, 3, 6)
    assert ranks(a, 4) == (0, 5, 7)
    assert ranks(a, 7) == (0, 4, 8)
    assert ranks(a, 9) == (2, 3, 7)
    assert file_ranks(a, 3) == [1, 5, 9]


# ----------------------------------------------------------------------------- structure
CASES = [
    (lambda: mols(5, 3), 15, 25, 5, 3),
    (lambda: mols(7, 5), 35, 49, 7, 5),
    (lambda: mols(4, 3), 12, 16, 4, 3),
    (lambda: mols(8, 5), 40, 64, 8, 5),
    (lambda: mols(9, 2), 18, 81, 9, 2),
    (lambda: mols(2, 1), 2, 4, 2, 1),
    (lambda: ramanujan(5, 7), 35, 49, 7, 5),
    (lambda: ramanujan(6, 3), 9, 18, 6, 3),
    (lambda: ramanujan(10, 5), 25, 50, 10, 5),
    (lambda: ramanujan(4, 3), 9, 12, 4, 3),
    (lambda: repetition(15, 3), 15, 5, 1, 3),
    (lambda: baseline(7), 7, 7, 1, 1),
    (lambda: cyclic(7, 2), 7, 7, 5, 5),
]


@pytest.mark.parametrize("make,K,F,l,r", CASES)
def test_degrees_and_replication(make, K, F, l, r) -> None:
    a = make()
    assert (a.K, a.num_files, a.l, a.r) == (K, F, l, r)
    A = a.biadjacency()
    assert A.shape == (K, F) and set(np.unique(A)) <= {0, 1}
    assert (A.sum(axis=1) == l).all() and (A.sum(axis=0) == r).all()
    assert K * l == F * r
    for w, fs in enumerate(a.files_of):
        assert list(fs) == sorted(fs) and all(w in a.workers_of[i] for i in fs)
    # copy_slots: row w*l + t of the worker-major stack is file files_of[w][t]
    slots = a.copy_slots()
    for i, ws in enumerate(a.workers_of):
        for c, w in enumerate(ws):
            assert slots[i, c] // l == w and a.files_of[w][slots[i, c] % l] == i
    # symmetries are automorphisms (also verified at construction) and form a group subset
    G = a.symmetry_group(256)
    key = sorted(a.workers_of)
    for g in G[:50]:
        assert sorted(tuple(sorted(int(g[w]) for w in ws)) for ws in a.workers_of) == key


@pytest.mark.parametrize("order", [2, 3, 4, 5, 7, 8, 9, 16, 25, 27])
def test_finite_field_axioms(order: int) -> None:
    F = gf(order)
    add, mul = F.add, F.mul
    e = np.arange(order)
    assert (add[0] == e).all() and (mul[1] == e).all() and (mul[0] == 0).all()
    assert (add == add.T).all() and (mul == mul.T).all()
    for a in e:  # every row of add is a permutation, every nonzero row of mul too
        assert sorted(add[a]) == list(e)
        if a:
            assert sorted(mul[a]) == list(e) and mul[a, F.inv(int(a))] == 1
        assert add[a, F.neg(int(a))] == 0
    # associativity and distributivity on all triples
    assert (add[add[e[:, None, None], e[None, :, None]], e[None, None, :]]
            == add[e[:, None, None], add[e[None, :, None], e[None, None, :]]]).all()
    assert (mul[mul[e[:, None, None], e[None, :, None]], e[None, None, :]]
            == mul[e[:, None, None], mul[e[None, :, None], e[None, None, :]]]).all()
    assert (mul[e[:, None, None], add[e[None, :, None], e[None, None, :]]]
            == add[mul[e[:, None, None], e[None, :, None]],
                   mul[e[:, None, None], e[None, None, :]]]).all()
    if F.k == 1:  # prime order: ordinary arithmetic mod p (the authors' construction)
        assert (mul == np.outer(e, e) % order).all() and (add == np.add.outer(e, e) % order).all()


@pytest.mark.parametrize("l", [2, 3, 4, 5, 7, 8, 9])
def test_latin_squares_are_mutually_orthogonal(l: int) -> None:
    L = latin_squares(l)
    assert L.shape == (l - 1, l, l)
    for sq in L:
        for i in range(l):
            assert sorted(sq[i]) == list(range(l)) and sorted(sq[:, i]) == list(range(l))
    for x, y in itertools.combinations(range(l - 1), 2):
        pairs = set(zip(L[x].ravel().tolist(), L[y].ravel().tolist()))
        assert len(pairs) == l * l, (l, x, y)


def test_latin_square_prime_formula() -> None:
    L = latin_squares(5)
    i, j = np.meshgrid(np.arange(5), np.arange(5), indexing="ij")
    for k in range(1, 5):
        assert (L[k - 1] == (k * i + j) % 5).all()


@pytest.mark.parametrize("l,r", [(5, 3), (4, 3), (8, 5), (9, 4), (7, 6), (3, 2)])
def test_mols_geometry_and_spectrum(l: int, r: int) -> None:
    a = mols(l, r)
    A = a.biadjacency().astype(np.int64)
    M = A @ A.T
    same_class = np.kron(np.eye(r, dtype=np.int64), np.ones((l, l), dtype=np.int64))
    # A A^T = l I + (J - blockdiag(J_l)): same square -> disjoint, different squares -> one file
    assert (M == l * np.eye(r * l, dtype=np.int64) + (1 - same_class)).all()
    ev = np.sort(np.linalg.eigvalsh(M.astype(float)))[::-1]
    assert np.isclose(ev[0], r * l)
    assert np.allclose(ev[1: 1 + r * (l - 1)], l)
    assert np.allclose(ev[1 + r * (l - 1):], 0, atol=1e-9)
    sv = np.linalg.svd(A.astype(float), compute_uv=False)
    assert sv[1] <= np.sqrt(l - 1) + np.sqrt(r - 1) + 1e-12  # Ramanujan


@pytest.mark.parametrize("m,s", [(2, 3), (3, 5), (5, 7), (3, 3), (6, 3), (4, 3), (5, 5), (10, 5),
                                 (7, 5), (8, 3)])
def test_ramanujan_second_singular_value(m: int, s: int) -> None:
    a = ramanujan(m, s)
    sv = np.sort(np.linalg.svd(a.biadjacency().astype(float), compute_uv=False))[::-1]
    assert np.isclose(sv[0], np.sqrt(a.l * a.r))
    assert sv[1] <= np.sqrt(a.l - 1) + np.sqrt(a.r - 1) + 1e-12
    if m < s:  # Case 1: sqrt(s) with multiplicity m(s-1)
        assert np.allclose(sv[1: 1 + m * (s - 1)], np.sqrt(s))
    elif m % s == 0:  # Case 2, s | m: sqrt(m)
        assert np.allclose(sv[1: 1 + s * (s - 1)], np.sqrt(m))
    else:  # Case 2, k = m mod s: sqrt(m + s - k) x (s-1)k, then sqrt(m - k)
        k = m % s
        assert np.allclose(sv[1: 1 + (s - 1) * k], np.sqrt(m + s - k))
        assert np.allclose(sv[1 + (s - 1) * k: 1 + (s - 1) * s], np.sqrt(m - k))


def test_repetition_and_baseline_layout() -> None:
    a = repetition(9, 3)
    assert a.workers_of == ((0, 1, 2), (3, 4, 5), (6, 7, 8))
    b = baseline(4)
    assert b.files_of == ((0,), (1,), (2,), (3,)) and b.r == 1


def test_cyclic_layout() -> None:
    a = cyclic(7, 2)
    assert a.files_of[0] == (0, 1, 2, 3, 4)
    assert a.files_of[5] == (0, 1, 2, 5, 6)  # 5, 6, 0, 1, 2 sorted
    assert a.workers_of[0] == (0, 3, 4, 5, 6)


def test_assignment_is_immutable_and_hashable() -> None:
    a = mols(5, 3)
    with pytest.raises(AttributeError):
        a.K = 3  # type: ignore[misc]
    assert hash(a) == hash(mols(5, 3)) and a == mols(5, 3) and a != ramanujan(3, 5)
    A = a.biadjacency()
    A[0, 0] = 7  # a fresh copy: the assignment is unaffected
    assert a.biadjacency()[0, 0] == 1
    assert Assignment.from_biadjacency(a.biadjacency()).files_of == a.files_of


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("call,match", [
    (lambda: mols(6, 2), "mols: l must be a prime power, got l=6"),
    (lambda: mols(10, 3), "prime power"),
    (lambda: mols(5, 5), r"1 <= r <= l-1, got l=5, r=5"),
    (lambda: mols(5, 0), "r must be >= 1"),
    (lambda: mols(1, 1), "l must be >= 2"),
    (lambda: mols(5.0, 3), "l must be an integer"),
    (lambda: latin_squares(12), "prime power"),
    (lambda: ramanujan(3, 4), "s must be prime, got s=4"),
    (lambda: ramanujan(6, 9), "s must be prime"),
    (lambda: ramanujan(0, 5), "m must be >= 1"),
    (lambda: repetition(10, 3), "r must divide K, got K=10, r=3"),
    (lambda: repetition(0, 1), "K must be >= 1"),
    (lambda: baseline(0), "K must be >= 1"),
    (lambda: cyclic(4, 2), r"K >= 2s\+1"),
    (lambda: cyclic(5, 0), "s must be >= 1"),
    (lambda: gf(12), "prime power"),
])
def test_bad_parameters(call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_bad_assignments() -> None:
    with pytest.raises(AssignmentError, match="same positive number of files"):
        Assignment(2, 2, ((0,), (0, 1)))
    with pytest.raises(AssignmentError, match="have no worker"):
        Assignment(3, 3, ((0,), (0,), (1,)))  # file 2 has no worker
    with pytest.raises(AssignmentError, match="same number of workers"):
        Assignment(3, 2, ((0,), (0,), (1,)))  # file 0 has two workers, file 1 one
    with pytest.raises(AssignmentError, match="strictly increasing"):
        Assignment(2, 2, ((1, 0), (0, 1)))
    with pytest.raises(AssignmentError, match="must lie in"):
        Assignment(1, 1, ((3,),))
    with pytest.raises(AssignmentError, match="one entry per worker"):
        Assignment(3, 1, ((0,),))
    with pytest.raises(AssignmentError, match="not an automorphism"):
        Assignment(4, 2, ((0,), (0,), (1,), (1,)), symmetries=((0, 2, 1, 3),))
    with pytest.raises(AssignmentError, match="permutation"):
        Assignment(2, 1, ((0,), (0,)), symmetries=((0, 0),))
    with pytest.raises(AssignmentError, match="0 or 1"):
        Assignment.from_biadjacency([[2]])


def test_prime_power() -> None:
    assert prime_power(8) == (2, 3) and prime_power(9) == (3, 2) and prime_power(7) == (7, 1)
    assert prime_power(12) is None and prime_power(1) is None and prime_power(6) is None
