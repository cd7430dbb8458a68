"""Median of means."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from byzantium.aggregators import REGISTRY, ConstraintError, median_of_means
from byzantium.aggregators.mom import mom_groups


def test_closed_form_groups():
    x = torch.arange(10.0).reshape(10, 1)
    # 5 groups of 2: means 0.5, 2.5, 4.5, 6.5, 8.5 -> median 4.5
    assert torch.equal(median_of_means(x, f=1, groups=5), torch.tensor([4.5]))
    # default 2f+1 = 3 groups of sizes 4, 3, 3: means 1.5, 5, 8 -> 5
    assert torch.equal(median_of_means(x, f=1), torch.tensor([5.0]))
    # group_size 4: sizes 4, 4, 2: means 1.5, 5.5, 8.5 -> 5.5
    assert torch.equal(median_of_means(x, f=1, group_size=4), torch.tensor([5.5]))


def test_f_zero_default_is_the_mean():
    x = torch.randn(7, 4, dtype=torch.float64)
    assert torch.allclose(median_of_means(x), x.mean(0), atol=1e-14)


def test_groups_equal_n_is_the_median():
    x = torch.randn(9, 6, dtype=torch.float64)
    assert torch.equal(median_of_means(x, f=2, groups=9), torch.from_numpy(np.median(x.numpy(), 0)))


def test_group_sizes():
    assert mom_groups(10, 1) == [4, 3, 3]
    assert mom_groups(10, 2, groups=5) == [2, 2, 2, 2, 2]
    assert mom_groups(10, 1, group_size=3) == [3, 3, 3, 1]
    assert mom_groups(7, 0) == [7]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"f": 2, "groups": 4}, r"requires number of groups > 2f \(each Byzantine input spoils at most one group\), got groups=4, f=2, n=10"),
        ({"f": 2, "group_size": 3}, "got groups=4, f=2, n=10"),
        ({"f": 1, "groups": 11}, "requires groups <= n, got groups=11, n=10"),
        ({"f": 1, "groups": 3, "group_size": 2}, "give groups or group_size, not both"),
        ({"f": 1, "groups": 0}, "groups must be an integer >= 1, got groups=0"),
        ({"f": 1, "group_size": 2.5}, "group_size must be an integer >= 1"),
        ({"f": 1, "inner": "mean"}, r"inner must be one of \['median', 'geometric_median'\], got inner='mean'"),
        ({"f": 1, "generator": 5}, "generator must be a torch.Generator or None"),
        ({"f": 5}, r"^median_of_means: requires n > 2f, got n=10, f=5$"),
    ],
)
def test_constraint_errors(kwargs, match):
    with pytest.raises(ConstraintError, match=match):
        median_of_means(torch.zeros(10, 2), **kwargs)


def test_generator_shuffles_before_grouping():
    x = torch.randn(12, 5, dtype=torch.float64)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(3))
    out = median_of_means(x, f=1, groups=3, generator=torch.Generator().manual_seed(3))
    means = torch.stack([x[perm[4 * k : 4 * k + 4]].mean(0) for k in range(3)])
    assert torch.allclose(out, means.median(0).values, atol=1e-14)
    again = median_of_means(x, f=1, groups=3, generator=torch.Generator().manual_seed(3))
    assert torch.equal(out, again)


def test_geometric_median_inner_uses_the_registry_rule():
    x = torch.randn(12, 5, dtype=torch.float64)
    out = median_of_means(x, f=1, groups=4, inner="geometric_median")
    means = torch.stack([x[3 * k : 3 * k + 3].mean(0) for k in range(4)])
    assert torch.allclose(out, REGISTRY["geometric_median"].fn(means), atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_byzantine_per_group_is_outvoted(dtype):
    g = torch.Generator().manual_seed(0)
    honest = torch.randn(10, 8, generator=g, dtype=dtype)
    x = honest.clone()
    x[[0, 5]] = 1e6  # two Byzantine inputs, in two different groups of 2
    out = median_of_means(x, f=2, groups=5)
    # the clean groups' means lie in the honest bounding box; so does their median
    assert out.dtype == dtype
    assert bool(((out >= honest.min(0).values) & (out <= honest.max(0).values)).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_blocked_cpu_path_matches_generic_path(dtype, monkeypatch):
    from byzantium.aggregators import _select, mom

    x = torch.randn(13, 70_000, generator=torch.Generator().manual_seed(2), dtype=dtype)
    gen = lambda: torch.Generator().manual_seed(9)  # noqa: E731
    fast = [median_of_means(x, f=3), median_of_means(x, f=2, group_size=2, generator=gen())]
    monkeypatch.setattr(mom, "uses_numpy_path", lambda t: False)
    monkeypatch.setattr(_select, "uses_numpy_path", lambda t: False)
    slow = [median_of_means(x, f=3), median_of_means(x, f=2, group_size=2, generator=gen())]
    tol = 1e-6 if dtype == torch.float32 else 1e-14
    for a, b in zip(fast, slow):
        assert a.dtype == dtype and torch.allclose(a, b, atol=tol)


def test_overflowed_group_means_fall_back_to_the_careful_path(monkeypatch):
    from byzantium.aggregators import mom

    x = torch.randn(9, 5, dtype=torch.float64)
    expected = median_of_means(x, f=1, groups=3)
    monkeypatch.setattr(mom, "_median_of_means_blocked", lambda g, w, sizes: torch.full((5,), float("inf")))
    # two different matrix products (per column block vs whole stack) sum each group in the
    # order their BLAS kernel picks: float64 group sums of 3 agree to a few ulps
    torch.testing.assert_close(median_of_means(x, f=1, groups=3), expected, rtol=1e-13, atol=1e-14)
