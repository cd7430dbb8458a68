import itertools
import time

import numpy as np
import pytest
import torch

from byzantium.aggregators import AggregatorError, ConstraintError, get
from byzantium.aggregators._distances import sq_distances_numpy
from byzantium.aggregators.mda import mda, mda_subset


def brute_subset(dist: np.ndarray, f: int) -> np.ndarray:
    """byzfl/Garfield: scan combinations in order, keep the first strict improvement."""
    n = len(dist)
    best, best_s = np.inf, None
    for s in itertools.combinations(range(n), n - f):
        d = dist[np.ix_(s, s)].max()
        if d < best:
            best, best_s = d, s
    return np.array(best_s)


@pytest.mark.parametrize(
    "x, f, expected",
    [
        ([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]], 1, [2.5, 3.5, 4.5]),  # byzfl doc
        ([[0.0], [1.0], [2.0], [10.0], [11.0]], 2, [1.0]),
        ([[0.0], [2.0], [4.0]], 1, [1.0]),  # tie {0,1} / {1,2}: lexicographic {0,1}
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_spec_vectors(x, f, expected, dtype):
    out = mda(torch.tensor(x, dtype=dtype), f=f)
    assert out.dtype == dtype
    assert out.tolist() == expected


def test_matches_brute_force_with_ties_and_duplicates():
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(400):
        n = int(rng.integers(3, 10))
        f = int(rng.integers(1, (n - 1) // 2 + 1))
        d = int(rng.integers(1, 4))
        a = rng.integers(-2, 3, size=(n, d)).astype(np.float64)  # small grid: many ties
        if rng.random() < 0.5:
            a[rng.integers(0, n, size=2)] = a[rng.integers(0, n)]  # duplicates
        x = torch.tensor(a, dtype=torch.float32)
        dist = sq_distances_numpy(x)
        got = mda_subset(dist, f)
        ref = brute_subset(dist, f)
        assert np.array_equal(got, ref), (a.tolist(), f, got, ref)
        assert torch.allclose(mda(x, f=f), x[torch.as_tensor(ref)].mean(dim=0))
        checked += 1
    assert checked == 400


def test_continuous_random_cases_match_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(60):
        n = int(rng.integers(5, 12))
        f = int(rng.integers(1, (n - 1) // 2 + 1))
        a = rng.normal(size=(n, 5)) * rng.choice([1.0, 100.0], size=(n, 1))
        dist = sq_distances_numpy(torch.tensor(a))
        assert np.array_equal(mda_subset(dist, f), brute_subset(dist, f))


def test_distance_to_some_honest_input_is_at_most_the_honest_diameter():
    rng = np.random.default_rng(2)
    for _ in range(40):
        n = int(rng.integers(5, 12))
        f = int(rng.integers(1, (n - 1) // 2 + 1))
        h = rng.normal(size=(n - f, 4))
        b = rng.normal(size=(f, 4)) * rng.choice([0.5, 3.0, 1e6])  # near, mid or far Byzantines
        a = np.concatenate([h, b])[rng.permutation(n)]
        honest = [i for i in range(n) if any((a[i] == r).all() for r in h)]
        out = mda(torch.tensor(a), f=f).numpy()
        diam = max(np.linalg.norm(h[i] - h[j]) for i in range(n - f) for j in range(n - f))
        assert min(np.linalg.norm(out - a[i]) for i in honest) <= diam + 1e-9


def test_robust_to_huge_inputs_and_permutation_invariant():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(13, 30, generator=g)
    x[10:] = 1e6 * torch.randn(3, 30, generator=g)
    out = mda(x, f=3)
    assert torch.allclose(out, x[:10].mean(dim=0), atol=1e-6)
    perm = torch.randperm(13, generator=g)
    assert torch.allclose(mda(x[perm], f=3), out, atol=1e-6)


def test_f_zero_is_the_mean_and_constraints():
    x = torch.randn(5, 4, dtype=torch.float64)
    assert torch.allclose(mda(x), x.mean(dim=0))
    with pytest.raises(ConstraintError, match=r"mda: requires n > 2f, got n=4, f=2"):
        mda(torch.randn(4, 3), f=2)
    assert torch.equal(get("mda", f=1)(x), mda(x, f=1))


def test_cost_guard():
    with pytest.raises(AggregatorError, match=r"mda: .*2\^f \* n\^2 = .*n=41, f=20.*max_cost"):
        mda(torch.randn(41, 2), f=20)
    with pytest.raises(AggregatorError, match="max_cost=10;"):
        mda(torch.randn(9, 2), f=4, max_cost=10.0)


def test_moderate_f_is_fast():
    # C(31, 10) = 44 M subsets by brute force; the branch and bound stays well under a second
    g = torch.Generator().manual_seed(4)
    x = torch.randn(31, 20, generator=g)
    x[21:] += 5 * torch.randn(10, 20, generator=g)
    t = time.perf_counter()
    out = mda(x, f=10)
    assert time.perf_counter() - t < 5.0
    assert torch.isfinite(out).all()
