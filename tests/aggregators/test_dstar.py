"""dSTAR-I (interpretation) and its switchable variants (shared/papers/dstar_byzsgd.md §1.3-1.4)."""

from __future__ import annotations

import math

import pytest
import torch

import byzantium.aggregators as agg
from byzantium.aggregators import ConstraintError, NonFiniteError
from byzantium.aggregators.dstar import VARIANTS, dstar_filter, filter_stats

F64 = torch.float64

# worked example of §1.3: four honest gradients, one Byzantine, a validation gradient
G = torch.tensor([[1.0, 1.0], [1.2, 0.8], [0.8, 1.2], [1.1, 1.0], [10.0, -10.0]], dtype=F64)
GV = torch.tensor([1.0, 1.1], dtype=F64)


def close(a, b, tol=1e-6):
    torch.testing.assert_close(torch.as_tensor(a, dtype=F64), torch.as_tensor(b, dtype=F64),
                               atol=tol, rtol=0)


# ---------------------------------------------------------------- the worked example


@pytest.mark.parametrize(
    "lam, kept, grad",
    [
        (1.5, [True, False, False, True, False], [1.05, 1.0]),
        (2.0, [True, False, False, True, False], [1.05, 1.0]),
        (3.0, [True, True, True, True, False], [1.025, 1.0]),
    ],
)
def test_worked_example(lam, kept, grad):
    r = dstar_filter(G, GV, f=1, lam=lam)
    close(r.center, [1.05, 1.0])
    assert r.scale == pytest.approx(math.sqrt(0.0125), abs=1e-12)
    assert r.threshold == pytest.approx(lam * math.sqrt(0.0125), abs=1e-12)
    close(r.deviations, [0.05, 0.25, math.sqrt(0.1025), 0.05, math.sqrt(8.95**2 + 11**2)])
    assert r.accepted.tolist() == kept
    close(r.gradient, grad)
    assert r.variant == "A" and r.nonfinite == 0


def test_worked_example_in_float32():
    r = dstar_filter(G.float(), GV.float(), f=1, lam=3.0)
    assert r.gradient.dtype == torch.float32
    assert r.accepted.tolist() == [True, True, True, True, False]
    close(r.gradient, [1.025, 1.0])


def test_batch_size_rescales_the_reference():
    # b_v = 4 b doubles r: lam = 1.5 now behaves like lam = 3
    r = dstar_filter(G, GV, f=1, lam=1.5, batch_size=4, val_batch_size=16)
    assert r.scale == pytest.approx(2 * math.sqrt(0.0125))
    assert r.accepted.tolist() == [True, True, True, True, False]
    close(r.gradient, [1.025, 1.0])


def test_include_val_in_mean():
    r = dstar_filter(G, GV, f=1, lam=2.0, include_val_in_mean=True)
    close(r.gradient, [(1 + 1.1 + 1.0) / 3, (1 + 1 + 1.1) / 3])


def test_zero_reference_falls_back_to_median_deviation():
    x = torch.tensor([[1.0, 0.0], [0.0, 3.0], [-2.0, 0.0]], dtype=F64)
    r = dstar_filter(x, torch.zeros(2, dtype=F64), f=1, lam=1.0)
    close(r.center, [0.0, 0.0])  # = g_v, so ||g_v - m|| = 0
    assert r.scale == 2.0  # median of deviations (1, 3, 2)
    assert r.accepted.tolist() == [True, False, True]
    close(r.gradient, [-0.5, 0.0])


def test_nothing_survives_returns_the_center():
    x = torch.tensor([[2.0, 0.0], [0.0, 2.0], [-2.0, -2.0]], dtype=F64)
    r = dstar_filter(x, torch.tensor([1.0, 1.0], dtype=F64), f=1, lam=1.0)
    close(r.center, [0.5, 0.5])
    assert not bool(r.accepted.any())
    close(r.gradient, [0.5, 0.5])


def test_nonfinite_rows_are_rejected_and_counted_against_f():
    x = G.clone()
    x[4] = torch.tensor([math.nan, 1.0])
    r = dstar_filter(x, GV, f=1, lam=2.0)
    assert r.nonfinite == 1 and not bool(r.accepted[4]) and r.deviations[4].item() == math.inf
    close(r.center, [1.0, 1.0])  # median of the 4 finite arrivals and g_v
    assert r.accepted.tolist() == [True, False, False, True, False]
    close(r.gradient, [1.05, 1.0])
    x[3, 0] = math.inf
    with pytest.raises(NonFiniteError, match="2 arrivals contain NaN/Inf .* at most f=1"):
        dstar_filter(x, GV, f=1)


# ---------------------------------------------------------------- variants on hand cases


def test_variant_b_anchors_at_the_validation_gradient():
    r = dstar_filter(G, GV, f=1, variant="B")
    close(r.center, GV)
    close(r.deviations[:4], [0.1, math.sqrt(0.13), math.sqrt(0.05), math.sqrt(0.02)])
    assert r.scale == pytest.approx(math.sqrt(0.05))  # median of the 5 deviations
    assert r.accepted.tolist() == [True, True, True, True, False]
    close(r.gradient, [1.025, 1.0])


def test_variant_c_scales_by_the_median_deviation():
    r = dstar_filter(G, GV, f=1, variant="C", lam=1.0)
    close(r.center, [1.05, 1.0])
    assert r.scale == pytest.approx(0.25)  # median of (.05, .25, .32, .05, 14.2)
    assert r.accepted.tolist() == [True, True, False, True, False]
    close(r.gradient, [(1 + 1.2 + 1.1) / 3, (1 + 0.8 + 1.0) / 3])
    # without a validation gradient the median is over the arrivals alone
    r = dstar_filter(G, None, f=1, variant="C", lam=1.0)
    close(r.center, [1.1, 1.0])
    close(r.deviations[:4], [0.1, math.sqrt(0.05), math.sqrt(0.13), 0.0])
    assert r.accepted.tolist() == [True, True, False, True, False]


def test_variant_d_is_the_median_of_three_aggregators():
    r = dstar_filter(G, GV, f=1, variant="D")
    # CwMed(arrivals) = (1.1, 1.0); CwTM_1 = (1.1, 0.9333); g_v = (1, 1.1) -> median (1.1, 1.0)
    close(r.center, [1.1, 1.0])
    assert r.scale == pytest.approx(math.sqrt(0.02))
    assert r.accepted.tolist() == [True, True, False, True, False]
    close(r.gradient, [1.1, 2.8 / 3])


def test_variant_e_median_of_bucket_means():
    # default 2f + 1 = 3 contiguous buckets {g1,g2}, {g3,g4}, {g5}: means (1.1,.9), (.95,1.1), (10,-10)
    r = dstar_filter(G, GV, f=1, variant="E")
    close(r.center, [1.1, 0.9])
    assert r.scale == pytest.approx(math.sqrt(0.05))
    assert r.accepted.tolist() == [True, True, True, True, False]
    close(r.gradient, [1.025, 1.0])
    # singleton buckets: the coordinate median of the arrivals; one bucket: their mean
    close(dstar_filter(G, GV, f=1, variant="E", buckets=5).center, [1.1, 1.0])
    close(dstar_filter(G, GV, f=0, variant="E", buckets=1).center, G.mean(0))
    # shuffled bucketing is reproducible from the generator
    a = dstar_filter(G, GV, f=1, variant="E", generator=torch.Generator().manual_seed(3))
    b = dstar_filter(G, GV, f=1, variant="E", generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.center, b.center)


def test_filter_stats():
    r = dstar_filter(G, GV, f=1, lam=2.0)
    s = filter_stats(r, torch.tensor([False, False, False, False, True]))
    assert s == {"kept": 2.0, "byzantine_accepted": 0.0, "honest_rejected": 0.5}


# ---------------------------------------------------------------- invariants (a)-(e) of §1.3


def _random_case(seed: int, k: int = 7, f: int = 3, d: int = 6):
    g = torch.Generator().manual_seed(seed)
    honest = 1.0 + 0.3 * torch.randn(k - f, d, dtype=F64, generator=g)
    gv = 1.0 + 0.3 * torch.randn(d, dtype=F64, generator=g)
    byz = 50.0 * torch.randn(f, d, dtype=F64, generator=g)
    if f:
        byz[0] = honest.mean(0) + 0.05  # one Byzantine hides near the honest cloud
    return torch.cat([byz, honest]), gv, g


@pytest.mark.parametrize("variant", ["A", "B", "C", "D", "E"])
def test_invariants_a_c_e(variant):
    for seed in range(10):
        x, gv, g = _random_case(seed)
        lam = 1.0 + 2.0 * seed / 10
        r = dstar_filter(x, gv, f=3, lam=lam, variant=variant)
        dev = torch.linalg.vector_norm(x - r.center, dim=1)
        close(r.deviations, dev, tol=1e-12)
        # (a) every accepted row, and the output, within lam * r of the center
        assert bool((dev[r.accepted] <= r.threshold).all())
        assert torch.linalg.vector_norm(r.gradient - r.center).item() <= r.threshold + 1e-12
        # (e) a row beyond the threshold is never used: output = mean of exactly the kept rows
        assert not bool(r.accepted[dev > r.threshold].any())
        if r.accepted.any():
            close(r.gradient, x[r.accepted].mean(0), tol=1e-12)
        # (c) only membership matters (variant E buckets by position, so not for E)
        if variant != "E":
            perm = torch.randperm(x.shape[0], generator=g)
            p = dstar_filter(x[perm], gv, f=3, lam=lam, variant=variant)
            close(p.gradient, r.gradient, tol=1e-12)
            assert torch.equal(p.accepted, r.accepted[perm])


@pytest.mark.parametrize("variant", ["A", "C", "D"])
def test_invariant_b_center_within_honest_range(variant):
    for seed in range(10):
        x, gv, _ = _random_case(seed, k=9, f=4, d=8)
        honest = torch.cat([x[4:], gv[None]])
        m = dstar_filter(x, gv, f=4, variant=variant).center
        assert bool((m >= honest.amin(0)).all()) and bool((m <= honest.amax(0)).all())


def test_invariant_d_no_byzantine_infinite_lambda_is_the_mean():
    x, gv, _ = _random_case(0, k=6, f=0)
    for variant in VARIANTS:
        r = dstar_filter(x, gv, f=0, lam=math.inf, variant=variant)
        assert bool(r.accepted.all()) and r.threshold == math.inf
        close(r.gradient, x.mean(0), tol=1e-12)


# ---------------------------------------------------------------- errors and packaging


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(f=3), ConstraintError, r"requires k >= 2f \+ 1 .* got k=5, f=3"),
        (dict(f=1, num_workers=2), ConstraintError, "requires f < n/2, got n=2, f=1"),
        (dict(f=1, num_workers=4), ConstraintError, "requires k <= n, got k=5, n=4"),
        (dict(f=1, lam=0.5), ConstraintError, "lam must be a number >= 1"),
        (dict(f=1, lam=math.nan), ConstraintError, "lam must be a number >= 1"),
        (dict(f=-1), ConstraintError, "f must be >= 0, got f=-1"),
        (dict(f=1, variant="Z"), ValueError, "unknown variant 'Z'"),
        (dict(f=1, batch_size=8), ConstraintError, "give both batch_size and val_batch_size"),
        (dict(f=1, batch_size=0, val_batch_size=4), ConstraintError, "batch_size must be >= 1"),
        (dict(f=1, buckets=3), ValueError, "apply to variant E only"),
        (dict(f=2, variant="E", buckets=3), ConstraintError, r"buckets >= 2f \+ 1"),
        (dict(f=1, variant="E", buckets=6), ConstraintError, "buckets must be <= k"),
    ],
)
def test_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        dstar_filter(G, GV, **kwargs)


def test_input_errors_and_small_k_override():
    with pytest.raises(NonFiniteError, match="validation gradient holds NaN/Inf"):
        dstar_filter(G, torch.tensor([math.nan, 1.0], dtype=F64), f=1)
    with pytest.raises(ValueError, match=r"validation must be a \(2,\) tensor"):
        dstar_filter(G, torch.zeros(3, dtype=F64), f=1)
    with pytest.raises(ValueError, match="variant A needs a validation gradient"):
        dstar_filter(G, None, f=1)
    with pytest.raises(ValueError, match=r"arrivals must be a \(k, d\) tensor"):
        dstar_filter(G[0], GV, f=0)
    with pytest.raises(ValueError, match="float32 or float64"):
        dstar_filter(G.long(), GV, f=0)
    # k = 5 < 2f + 1 = 7 is allowed explicitly for non-rushing studies
    r = dstar_filter(G, GV, f=3, allow_small_k=True)
    assert r.accepted.tolist() == [True, False, False, True, False]


def test_variant_e_buckets_shrink_to_the_finite_arrivals():
    # buckets=5 = k, but one row is NaN: 4 singleton buckets, so the median of the 4 finite rows
    x = G.clone()
    x[4, 1] = math.nan
    r = dstar_filter(x, GV, f=1, variant="E", buckets=5)
    assert r.nonfinite == 1 and bool(torch.isfinite(r.center).all())
    close(r.center, [1.05, 1.0])


def test_remaining_error_messages():
    with pytest.raises(ConstraintError, match="f must be an integer, got f=1.5"):
        dstar_filter(G, GV, f=1.5)
    with pytest.raises(ConstraintError, match="num_workers must be an integer, got num_workers=True"):
        dstar_filter(G, GV, f=1, num_workers=True)
    with pytest.raises(ConstraintError, match="buckets must be an integer, got buckets=3.0"):
        dstar_filter(G, GV, f=1, variant="E", buckets=3.0)
    with pytest.raises(ValueError, match="variant D needs a validation gradient; only variant C runs"):
        dstar_filter(G, None, f=1, variant="D")
    with pytest.raises(NonFiniteError, match="all k=3 arrivals contain NaN/Inf"):
        dstar_filter(torch.full((3, 2), math.nan, dtype=F64), GV, f=3, allow_small_k=True)
    with pytest.raises(ValueError, match=r"byzantine mask must have shape \(5,\), got \(4,\)"):
        filter_stats(dstar_filter(G, GV, f=1), torch.zeros(4, dtype=torch.bool))


def test_module_registers_nothing():
    assert all(e.fn.__module__ != "byzantium.aggregators.dstar" for e in agg.REGISTRY.values())
    assert not any("dstar" in name for name in agg.REGISTRY)
