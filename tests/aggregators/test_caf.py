import numpy as np
import pytest
import torch

from byzantium.aggregators import ConstraintError, get
from byzantium.aggregators.caf import caf


def reference_caf(a: np.ndarray, f: int) -> np.ndarray:
    """The published loop in d-space: explicit weighted covariance and its top eigenpair."""
    n = len(a)
    c = np.ones(n)
    best_lam, best_mu = np.inf, a.mean(axis=0)
    while c.sum() > n - 2 * f:
        mu = c @ a / c.sum()
        y = a - mu
        cov = (c[:, None] * y).T @ y / c.sum()
        vals, vecs = np.linalg.eigh(cov)
        lam, v = vals[-1], vecs[:, -1]
        if lam < best_lam:
            best_lam, best_mu = lam, mu
        tau = (y @ v) ** 2
        tmax = tau[c > 0].max()
        if tmax <= 0:
            break
        c = np.where(c > 0, c * np.clip(1 - tau / tmax, 0, 1), 0.0)
    return best_mu


def test_byzfl_vector():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    # the mean with weights 1/3 (not dyadic) is a BLAS product whose last bit depends on the
    # CPU's summation order (reversed order gives 4.0000005); float32 rtol 1e-6, about 8 ulps
    torch.testing.assert_close(caf(x, f=1), torch.tensor([4.0, 5.0, 6.0]), rtol=1e-6, atol=0.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_the_d_space_algorithm(dtype):
    rng = np.random.default_rng(0)
    for _ in range(25):
        n = int(rng.integers(3, 12))
        f = int(rng.integers(1, (n - 1) // 2 + 1))
        a = rng.normal(size=(n, 5))
        a[: int(rng.integers(0, f + 1))] *= 8.0  # some outliers
        out = caf(torch.tensor(a, dtype=dtype), f=f)
        assert out.dtype == dtype
        tol = 1e-5 if dtype == torch.float32 else 1e-9
        assert np.allclose(out.double().numpy(), reference_caf(a, f), atol=tol * 10, rtol=tol)


def test_robust_to_huge_inputs_and_permutation():
    g = torch.Generator().manual_seed(1)
    n, f = 12, 3
    x = torch.randn(n, 20, generator=g, dtype=torch.float64)
    x[n - f :] = 1e6 * (1 + torch.rand(f, 20, generator=g, dtype=torch.float64))
    h = x[: n - f]
    out = caf(x, f=f)
    assert (out >= h.min(dim=0).values).all() and (out <= h.max(dim=0).values).all()
    assert torch.linalg.vector_norm(out - h.mean(dim=0)) < torch.cdist(h, h).max()
    perm = torch.randperm(n, generator=g)
    assert torch.allclose(caf(x[perm], f=f), out, atol=1e-9)


def test_identical_inputs_and_f_zero():
    x = torch.ones(5, 3)
    # weights 1/5 in a BLAS product: the last bit depends on the CPU's summation order; rtol 1e-6
    torch.testing.assert_close(caf(x, f=2), torch.ones(3), rtol=1e-6, atol=0.0)
    # weights 1/8 are dyadic: every product and partial sum is exact, so the input comes back
    # bit for bit on any IEEE-754 machine
    assert torch.equal(caf(torch.full((8, 3), 1.5), f=3), torch.full((3,), 1.5))
    y = torch.randn(6, 4, dtype=torch.float64)
    assert torch.allclose(caf(y), y.mean(dim=0))


def test_constraint_and_registry():
    with pytest.raises(ConstraintError, match=r"caf: requires n > 2f, got n=6, f=3"):
        caf(torch.randn(6, 2), f=3)
    x = torch.randn(7, 3)
    assert torch.equal(get("caf", f=2)(x), caf(x, f=2))
