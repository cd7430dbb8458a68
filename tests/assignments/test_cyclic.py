"""DRACO cyclic code (spec §3.3-§3.5b): encoding matrix, worker encoding, exact decoding."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from byzantium.assignments import AssignmentError, CyclicCode, DecodeError


def part_grads(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def rel_err(x: torch.Tensor, y: torch.Tensor) -> float:
    return float((x - y).abs().max() / y.abs().max())


@pytest.mark.parametrize("n,s", [(7, 2), (9, 3), (15, 3), (10, 1), (21, 5), (5, 2)])
def test_encoding_matrix(n: int, s: int) -> None:
    code = CyclicCode(n, s)
    W = code.W
    holds = np.array([[(i - j) % n <= 2 * s for i in range(n)] for j in range(n)])
    assert ((np.abs(W) > 1e-12) == holds).all() and (W[~holds] == 0).all()
    assert np.linalg.matrix_rank(W) == n - 2 * s
    assert np.abs(code.C2.conj().T @ W).max() < 1e-12 * max(1.0, np.abs(W).max())
    # W = C1 Q with Q[0] = 1 and Q[1:, i] solving C1[Z_i, 1:] x = -C1[Z_i, 0] (spec §3.3)
    Q = np.ones((n - 2 * s, n), dtype=complex)
    for i in range(n):
        Z = np.flatnonzero(~holds[:, i])
        assert len(Z) == n - 2 * s - 1
        if len(Z):
            Q[1:, i] = np.linalg.solve(code.C1[Z, 1:], -code.C1[Z, 0])
    assert np.allclose(code.C1 @ Q, W, atol=1e-10 * np.abs(W).max())
    # the unitary DFT and the cyclic support of the assignment graph
    assert np.allclose(code.C @ code.C.conj().T, np.eye(n), atol=1e-12)
    assert code.assignment.files_of[0] == tuple(range(2 * s + 1))


def test_encode_and_encode_worker() -> None:
    code = CyclicCode(9, 2)
    G = part_grads(9, 11, 0)
    R = code.encode(G)
    assert R.dtype == torch.complex128 and R.shape == (9, 11)
    assert torch.allclose(R, torch.from_numpy(code.W) @ G.to(torch.complex128), atol=1e-12)
    for j in range(9):
        fs = list(code.assignment.files_of[j])
        y = code.encode_worker(j, G[fs].float())  # a float32 worker still encodes in complex128
        assert y.dtype == torch.complex128
        assert torch.allclose(y, R[j], atol=1e-5)
        assert np.allclose(code.coefficients(j), code.W[j, fs])


def _attacks(R: torch.Tensor, bad: list[int], rng: np.random.Generator) -> list[torch.Tensor]:
    out = []
    d = R.shape[1]
    for kind in ("huge", "constant", "reversed", "zero"):
        X = R.clone()
        if bad:
            if kind == "huge":
                X[bad] = torch.from_numpy(rng.normal(size=(len(bad), d)) * 1e8
                                          + 1j * rng.normal(size=(len(bad), d)) * 1e8)
            elif kind == "constant":  # authors' constant attack on coded messages: y - 100
                X[bad] = X[bad] - 100.0
            elif kind == "reversed":  # y + (-100 y)
                X[bad] = -99.0 * X[bad]
            else:
                X[bad] = 0.0
        out.append(X)
    return out


@pytest.mark.parametrize("n,s", [(7, 2), (9, 3)])
def test_exact_recovery_for_every_adversary_set(n: int, s: int) -> None:
    """Every choice of at most s adversarial positions, four attacks each."""
    code = CyclicCode(n, s)
    G = part_grads(n, 16, n)
    truth = G.sum(dim=0)
    R = code.encode(G)
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    for k in range(0, s + 1):
        for bad in itertools.combinations(range(n), k):
            for X in _attacks(R, list(bad), rng):
                res = code.decode(X, gen)
                assert rel_err(res.total, truth) < 1e-10, (bad,)
                assert set(bad) <= set(res.flagged) and len(res.flagged) == s
                assert res.residual < 1e-9
    assert torch.allclose(code.decode(R, gen).mean(), G.mean(dim=0), atol=1e-12)


@pytest.mark.parametrize("n,s", [(15, 3), (15, 7), (19, 4), (21, 5), (25, 2), (25, 6), (25, 12)])
def test_exact_recovery_random_positions_huge_values(n: int, s: int) -> None:
    code = CyclicCode(n, s)
    G = part_grads(n, 64, n + s)
    truth = G.sum(dim=0)
    R = code.encode(G)
    gen = torch.Generator().manual_seed(1)
    rng = np.random.default_rng(n * 100 + s)
    for _ in range(10):
        bad = sorted(rng.choice(n, s, replace=False).tolist())
        X = R.clone()
        X[bad] = torch.from_numpy(rng.uniform(-1e8, 1e8, size=(s, 64))
                                  + 1j * rng.uniform(-1e8, 1e8, size=(s, 64)))
        res = code.decode(X, gen)
        assert sorted(res.flagged) == bad
        assert rel_err(res.total, truth) < 1e-9
        assert res.locator[bad].max() < 1e-6 * res.locator.max()


def test_non_finite_messages_are_treated_as_errors() -> None:
    code = CyclicCode(9, 2)
    G = part_grads(9, 8, 3)
    R = code.encode(G)
    X = R.clone()
    X[2, 3] = float("nan")
    X[6] = complex(float("inf"), 0.0)
    res = code.decode(X, torch.Generator().manual_seed(0))
    assert set(res.flagged) == {2, 6} and rel_err(res.total, G.sum(dim=0)) < 1e-10
    X[0, 0] = float("nan")
    with pytest.raises(DecodeError, match="3 messages are non-finite, more than s=2"):
        code.decode(X, torch.Generator().manual_seed(0))


def test_more_than_s_adversaries_is_visible_in_the_residual() -> None:
    code = CyclicCode(15, 3)
    R = code.encode(part_grads(15, 32, 5))
    X = R.clone()
    X[[1, 4, 8, 11]] += 10.0  # s + 1 = 4 adversaries: beyond the guarantee
    res = code.decode(X, torch.Generator().manual_seed(0))
    assert res.residual > 1e-3


def test_fresh_projection_and_determinism() -> None:
    code = CyclicCode(7, 2)
    G = part_grads(7, 5, 9)
    X = code.encode(G)
    X[3] += 1.0
    a = code.decode(X, torch.Generator().manual_seed(42))
    b = code.decode(X, torch.Generator().manual_seed(42))
    assert torch.equal(a.total, b.total) and a.flagged == b.flagged
    assert a.total.dtype == torch.float64
    assert code.decode(X, torch.Generator().manual_seed(42), out_dtype=torch.float32).total.dtype \
        == torch.float32


def test_complex64_wire_still_locates_with_the_smallest_locator_rule() -> None:
    """At complex64 the authors' 1e-9 threshold fails (spec §3.4 item 7); flagging the s
    smallest |Lambda| still finds the adversaries and decodes to float32-level error."""
    code = CyclicCode(15, 3)
    G = part_grads(15, 256, 11)
    X = code.encode(G)
    X[[0, 7, 9]] = X[[0, 7, 9]] * -99.0
    res = code.decode(X.to(torch.complex64), torch.Generator().manual_seed(0))
    assert sorted(res.flagged) == [0, 7, 9]
    assert rel_err(res.total, G.sum(dim=0)) < 1e-3


def test_bad_inputs() -> None:
    with pytest.raises(AssignmentError, match=r"K >= 2s\+1"):
        CyclicCode(6, 3)
    with pytest.raises(AssignmentError, match="s must be >= 1"):
        CyclicCode(5, 0)
    code = CyclicCode(7, 2)
    gen = torch.Generator()
    with pytest.raises(DecodeError, match=r"expected a \(7, d\) tensor"):
        code.decode(torch.zeros(6, 3, dtype=torch.complex128), gen)
    with pytest.raises(DecodeError, match="must be complex"):
        code.decode(torch.zeros(7, 3), gen)
    with pytest.raises(AssignmentError, match=r"expected \(7, d\) part-gradients"):
        code.encode(torch.zeros(5, 3))
    with pytest.raises(AssignmentError, match=r"expected \(5, d\) part-gradients"):
        code.encode_worker(0, torch.zeros(3, 4))
    with pytest.raises(AssignmentError, match="j must lie in"):
        code.encode_worker(7, torch.zeros(5, 4))
