import itertools

import numpy as np
import pytest
import torch

from byzantium.aggregators import AggregatorError, ConstraintError, get
from byzantium.aggregators._distances import sq_distances_numpy
from byzantium.aggregators.smea import smea, smea_subset, subset_top_eigenvalues


def reference_subset(a: np.ndarray, f: int) -> tuple:
    """Combinations order, first strict minimum of the top eigenvalue of the d x d covariance."""
    best, best_s = np.inf, None
    for s in itertools.combinations(range(len(a)), len(a) - f):
        y = a[list(s)] - a[list(s)].mean(axis=0)
        lam = np.linalg.eigvalsh(y.T @ y / len(s))[-1]
        if lam < best:
            best, best_s = lam, s
    return best_s


def test_byzfl_vector():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    assert smea(x, f=1).tolist() == [2.5, 3.5, 4.5]  # {0,1} and {1,2} tie: the first wins


def test_eigenvalues_from_the_gram_submatrix():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(7, 5))
    subsets = np.array(list(itertools.combinations(range(7), 5)))
    got = subset_top_eigenvalues(sq_distances_numpy(torch.tensor(a)), subsets)
    for s, lam in zip(subsets, got):
        y = a[s] - a[s].mean(axis=0)
        assert lam == pytest.approx(np.linalg.eigvalsh(y.T @ y / 5)[-1], rel=1e-10)


def test_against_d_space_enumeration():
    rng = np.random.default_rng(1)
    for _ in range(25):
        n = int(rng.integers(3, 10))
        f = int(rng.integers(1, (n - 1) // 2 + 1))
        a = rng.normal(size=(n, 3)) * rng.choice([1.0, 6.0], size=(n, 1))
        got = smea_subset(sq_distances_numpy(torch.tensor(a)), f)
        assert tuple(got.tolist()) == reference_subset(a, f)
        out = smea(torch.tensor(a), f=f).numpy()
        assert np.allclose(out, a[list(got)].mean(axis=0))


def test_robust_to_huge_inputs_and_permutation():
    g = torch.Generator().manual_seed(2)
    n, f = 10, 3
    x = torch.randn(n, 12, generator=g)
    x[n - f :] = 1e6 * torch.randn(f, 12, generator=g)
    out = smea(x, f=f)
    assert out.dtype == torch.float32
    assert torch.allclose(out, x[: n - f].mean(dim=0), atol=1e-6)
    perm = torch.randperm(n, generator=g)
    assert torch.allclose(smea(x[perm], f=f), out, atol=1e-6)


def test_f_zero_constraint_cost_guard_registry():
    x = torch.randn(6, 3, dtype=torch.float64)
    assert torch.allclose(smea(x), x.mean(dim=0))
    with pytest.raises(ConstraintError, match=r"smea: requires n > 2f, got n=6, f=3"):
        smea(x, f=3)
    with pytest.raises(AggregatorError, match=r"smea: .*C\(n, f\).*n=41, f=20.*max_cost"):
        smea(torch.randn(41, 2), f=20)
    assert torch.equal(get("smea", f=1)(x), smea(x, f=1))
