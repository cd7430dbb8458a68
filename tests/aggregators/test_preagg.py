"""Pre-aggregations: nearest-neighbour mixing, bucketing, static clipping."""

from __future__ import annotations

import math

import pytest
import torch

from byzantium.aggregators import REGISTRY, ConstraintError, bucketing, clip, nnm
from byzantium.aggregators._distances import pairwise_sq_distances as _pairwise_sq_distances


def brute_nnm(x: torch.Tensor, f: int) -> torch.Tensor:
    n = x.shape[0]
    out = torch.empty_like(x)
    for i in range(n):
        d = ((x - x[i]) ** 2).sum(1)
        idx = torch.argsort(d, stable=True)[: n - f]
        out[i] = x[idx].mean(0)
    return out


# ----------------------------------------------------------------------------- NNM


def test_nnm_closed_form():
    x = torch.tensor([[0.0], [1.0], [2.0], [10.0], [100.0]])
    out = nnm(x, f=2)
    expected = torch.tensor([[1.0], [1.0], [1.0], [13.0 / 3], [112.0 / 3]])
    assert torch.allclose(out, expected)


def test_nnm_f_zero_replaces_every_row_by_the_mean():
    x = torch.randn(6, 4, dtype=torch.float64)
    assert torch.allclose(nnm(x, f=0), x.mean(0).expand(6, -1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nnm_matches_brute_force(dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(13, 30, generator=g, dtype=dtype)
    x[:3] += 20.0
    out = nnm(x, f=4)
    assert out.dtype == dtype and out.shape == x.shape
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(out, brute_nnm(x, 4), atol=tol)


def test_nnm_is_permutation_equivariant():
    x = torch.randn(9, 7, dtype=torch.float64)
    p = torch.randperm(9, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(nnm(x[p], f=3), nnm(x, f=3)[p], atol=1e-12)


def test_pairwise_distances_gram_and_overflow_rescaling():
    x = torch.randn(6, 5, dtype=torch.float64)
    ref = torch.cdist(x, x) ** 2
    d = _pairwise_sq_distances(x)
    assert torch.allclose(d, ref, atol=1e-10) and bool((d.diagonal() == 0).all())
    # float32 rows near 1e25: the Gram matrix overflows, the ranking must survive
    y = torch.tensor([[1e25, 0.0], [3e25, 1e25], [-2e25, 0.0], [1.1e25, 0.0]])
    assert not bool(torch.isfinite(y @ y.T).all())
    ranking = torch.argsort(_pairwise_sq_distances(y)[0])
    assert ranking.tolist() == [0, 3, 1, 2]
    assert bool(torch.isfinite(nnm(y, f=1)).all())


def test_nnm_constraint():
    with pytest.raises(ConstraintError, match=r"^nnm: requires n > 2f, got n=4, f=2$"):
        nnm(torch.zeros(4, 3), f=2)


# ----------------------------------------------------------------------------- bucketing


def test_bucketing_closed_form_without_generator():
    x = torch.arange(7.0).reshape(7, 1)
    assert torch.equal(bucketing(x, s=3), torch.tensor([[1.0], [4.0], [6.0]]))
    assert torch.equal(bucketing(x, s=7), torch.tensor([[3.0]]))
    assert torch.equal(bucketing(x, s=10), torch.tensor([[3.0]]))
    assert torch.equal(bucketing(x, s=1), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bucketing_uses_the_generators_permutation(dtype):
    x = torch.randn(11, 5, dtype=dtype)
    perm = torch.randperm(11, generator=torch.Generator().manual_seed(5))
    out = bucketing(x, s=4, generator=torch.Generator().manual_seed(5))
    expected = torch.stack([x[perm[0:4]].mean(0), x[perm[4:8]].mean(0), x[perm[8:]].mean(0)])
    assert out.dtype == dtype and out.shape == (3, 5)
    assert torch.allclose(out, expected, atol=1e-6 if dtype == torch.float32 else 1e-14)


def test_bucketing_deterministic_given_seed_and_random_across_seeds():
    x = torch.randn(12, 3, dtype=torch.float64)
    a = bucketing(x, s=3, generator=torch.Generator().manual_seed(1))
    b = bucketing(x, s=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    outs = {tuple(bucketing(x, s=3, generator=torch.Generator().manual_seed(k)).sum(1).tolist()) for k in range(5)}
    assert len(outs) > 1
    # a generator advances: two calls on one generator give different buckets
    g = torch.Generator().manual_seed(1)
    assert not torch.equal(bucketing(x, s=3, generator=g), bucketing(x, s=3, generator=g))
    # the multiset of rows is preserved: the buckets average to the overall mean when s | n
    assert torch.allclose(a.mean(0), x.mean(0), atol=1e-14)


def test_bucketing_maps_nf():
    m = REGISTRY["bucketing"].maps_nf
    assert m(10, 2, {"s": 3}) == (4, 2)
    assert m(9, 1, {"s": 3}) == (3, 1)
    assert REGISTRY["nnm"].maps_nf(10, 3, {}) == (10, 3)
    assert REGISTRY["clip"].maps_nf(10, 3, {"tau": 1.0}) == (10, 3)


@pytest.mark.parametrize("s", [0, -2, 1.5, "2", True])
def test_bucketing_bad_s(s):
    with pytest.raises(ConstraintError, match=r"^bucketing: s \(bucket size\) must be an integer >= 1"):
        bucketing(torch.zeros(4, 2), s=s)


def test_bucketing_bad_generator():
    with pytest.raises(ConstraintError, match="bucketing: generator must be a torch.Generator or None, got int"):
        bucketing(torch.zeros(4, 2), s=2, generator=3)


# ----------------------------------------------------------------------------- clip


def test_clip_closed_form():
    x = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0], [-6.0, 8.0]])
    out = clip(x, tau=1.0)
    assert torch.allclose(out, torch.tensor([[0.6, 0.8], [0.3, 0.4], [0.0, 0.0], [-0.6, 0.8]]))
    assert torch.equal(out[1], x[1])  # rows within the radius pass bit-exactly


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clip_norms_bounded_and_directions_kept(dtype):
    x = torch.randn(8, 20, dtype=dtype) * torch.logspace(-2, 2, 8, dtype=dtype)[:, None]
    out = clip(x, tau=1.5)
    norms = out.norm(dim=1)
    assert out.dtype == dtype
    assert bool((norms <= 1.5 * (1 + 1e-6)).all())
    cos = (out * x).sum(1) / (norms * x.norm(dim=1))
    assert torch.allclose(cos, torch.ones(8, dtype=dtype))


def test_clip_rows_whose_norm_overflows():
    x = torch.tensor([[3e38, 3e38], [1.0, 0.0]])  # float32: ||row 0|| overflows
    out = clip(x, tau=2.0)
    assert torch.allclose(out[0], torch.tensor([math.sqrt(2.0), math.sqrt(2.0)]))
    assert torch.equal(out[1], x[1])


@pytest.mark.parametrize("tau", [0, -1.0, float("inf"), float("nan"), "a", None])
def test_clip_bad_tau(tau):
    with pytest.raises(ConstraintError, match="^clip: tau must be a positive finite number"):
        clip(torch.ones(3, 2), tau=tau)


def test_preaggregations_do_not_modify_input():
    x = torch.randn(6, 4)
    before = x.clone()
    nnm(x, f=1)
    bucketing(x, s=2, generator=torch.Generator().manual_seed(0))
    out = clip(x, tau=100.0)
    assert torch.equal(x, before)
    out[0, 0] = 123.0  # clip returns a new tensor even when nothing is clipped
    assert torch.equal(x, before)
