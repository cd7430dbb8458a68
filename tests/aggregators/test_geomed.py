import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from byzantium.aggregators import AggregatorError, ConstraintError, get
from byzantium.aggregators.geomed import (
    GeometricMedianInfo,
    geometric_median,
    geometric_median_with_info,
)


def scipy_median(a: np.ndarray, w: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    w = np.ones(len(a)) if w is None else w
    w = w / w.sum()

    def obj(z):
        r = np.linalg.norm(a - z, axis=1)
        return float(w @ r), (w / np.maximum(r, 1e-300)) @ (z - a)

    res = minimize(obj, a.mean(axis=0), jac=True, method="BFGS", options={"gtol": 1e-12})
    return res.x, res.fun


@pytest.mark.parametrize("seed", range(6))
def test_matches_scipy_minimisation(seed):
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(3, 9)), int(rng.integers(2, 5))
    a = rng.normal(size=(n, d))
    w = rng.uniform(0.5, 2.0, size=n) if seed % 2 else None
    z, info = geometric_median_with_info(
        torch.tensor(a), weights=w, eps=1e-12, tol=1e-13, max_iter=5000
    )
    zs, fs = scipy_median(a, w)
    assert info.converged and info.iterations >= 1
    assert info.objective <= fs * (1 + 1e-9)
    assert np.linalg.norm(z.numpy() - zs) < 1e-4 * (1 + np.linalg.norm(zs))


def test_one_dimension_odd_n_is_the_median():
    x = torch.tensor([[0.0], [1.0], [5.0], [6.0], [100.0]], dtype=torch.float64)
    out = geometric_median(x, eps=1e-12, tol=1e-15, max_iter=10000)
    assert out.item() == pytest.approx(5.0, abs=1e-6)


def test_info_and_defaults():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 7, generator=g)
    z, info = geometric_median_with_info(x)
    assert isinstance(info, GeometricMedianInfo)
    assert info.converged and 1 <= info.iterations < 100
    direct = torch.linalg.vector_norm(x.double() - z.double(), dim=1).mean().item()
    assert info.objective == pytest.approx(direct, rel=1e-5)
    assert torch.equal(geometric_median(x), z)
    assert z.dtype == torch.float32 and geometric_median(x.double()).dtype == torch.float64
    _, one = geometric_median_with_info(x, max_iter=1, tol=0.0)
    assert not one.converged and one.iterations == 1
    assert torch.allclose(get("geometric_median")(x), z)


def test_weights_equal_repeated_rows_and_init_does_not_matter():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 4, generator=g, dtype=torch.float64)
    rep = torch.cat([x, x[1:2], x[1:2], x[3:4]])
    kw = dict(eps=1e-12, tol=1e-14, max_iter=5000)
    a = geometric_median(x, weights=torch.tensor([1.0, 3.0, 1.0, 2.0, 1.0]), **kw)
    b = geometric_median(rep, **kw)
    assert torch.allclose(a, b, atol=1e-7)
    c = geometric_median(x, init=torch.full((4,), 50.0, dtype=torch.float64), **kw)
    assert torch.allclose(geometric_median(x, **kw), c, atol=1e-7)


def test_permutation_invariance():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(10, 6, generator=g, dtype=torch.float64)
    perm = torch.randperm(10, generator=g)
    assert torch.allclose(geometric_median(x), geometric_median(x[perm]), atol=1e-10)


def test_robust_to_huge_inputs():
    g = torch.Generator().manual_seed(3)
    n, f = 11, 5
    x = torch.randn(n, 20, generator=g)
    x[n - f :] = 1e6 * (1 + torch.rand(f, 20, generator=g))
    h = x[: n - f]
    out = geometric_median(x, f=f)
    # breakdown point 1/2: stays within a few honest diameters of the honest inputs
    diam = torch.cdist(h, h).max()
    assert torch.linalg.vector_norm(out - h.mean(dim=0)) < 3 * diam


def test_errors():
    x = torch.randn(4, 2)
    with pytest.raises(ConstraintError, match=r"geometric_median: requires n > 2f, got n=4, f=2"):
        geometric_median(x, f=2)
    with pytest.raises(AggregatorError, match="weights must have one entry per"):
        geometric_median(x, weights=[1.0, 2.0])
    with pytest.raises(AggregatorError, match="weights must be finite, >= 0"):
        geometric_median(x, weights=[1.0, -1.0, 1.0, 1.0])
    with pytest.raises(AggregatorError, match="eps must be > 0"):
        geometric_median(x, eps=0.0)
    with pytest.raises(AggregatorError, match="max_iter must be an integer >= 1"):
        geometric_median(x, max_iter=0)
    with pytest.raises(AggregatorError, match="init must be a tensor of shape"):
        geometric_median(x, init=torch.zeros(3))
