"""Each attack produces what its formula says, on small hand-computed inputs."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from byzantium import attacks as A
from byzantium.attacks import AttackContext, AttackError, AttackWarning

# honest = [[1, 2], [3, 6]]: mu = [2, 4], population std = [1, 2], unbiased std = [sqrt2, 2 sqrt2]
H = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
OWN = torch.tensor([[1.0, -1.0], [0.5, 2.0], [-3.0, 0.0]])
MU = torch.tensor([2.0, 4.0])
SIG = torch.tensor([1.0, 2.0])


def ctx(n: int = 5, f: int = 3, **kw) -> AttackContext:
    kw.setdefault("own", OWN)
    return AttackContext(honest=H, n=n, num_byzantine=f, **kw)


def rows_equal(out: torch.Tensor, v) -> None:
    v = torch.as_tensor(v, dtype=out.dtype)
    assert torch.allclose(out, v.expand_as(out), atol=1e-6), (out, v)


# ---------------------------------------------------------------------------------------- ALIE


def z_of(n: int, q: int, **kw) -> float:
    d = 3
    c = AttackContext(honest=torch.randn(n - q, d), n=n, num_byzantine=q)
    return A.get("alie", **kw).run(c)[1]["z"]


@pytest.mark.parametrize(
    "n, table",
    [
        (15, [0.084, 0.253, 0.431, 0.623, 0.842, 1.111, 1.501]),
        (25, [0.050, 0.151, 0.253, 0.358, 0.468, 0.583, 0.706, 0.842, 0.994, 1.175, 1.405, 1.751]),
        (35, [0.036, 0.108, 0.180, 0.253, 0.328, 0.405, 0.484, 0.566, 0.652, 0.744, 0.842, 0.949,
              1.068, 1.204, 1.368, 1.579, 1.902]),
    ],
)
def test_alie_z_max_matches_redundancy_table(n, table):
    # redundancy.md §1.6: z_max = Phi^-1((n - s)/n), s = floor(n/2 + 1) - q, for q = 1..len(table)
    got = [round(A.alie_z_max(n, q), 3) for q in range(1, len(table) + 1)]
    assert got == table
    # the attack resolves the same z (no fallback inside the table)
    assert z_of(n, 3) == pytest.approx(table[2], abs=5e-4)


def test_alie_z_rule_n_vs_honest():
    # field.md §2: n=20, f=8 -> s=3; Phi^-1(17/20) = 1.0364 vs Phi^-1(9/12) = 0.6745
    assert A.alie_supporters(20, 8) == 3
    assert A.alie_z_max(20, 8) == pytest.approx(1.0364334, abs=1e-6)
    assert A.alie_z_max(20, 8, z_rule="honest") == pytest.approx(0.6744898, abs=1e-6)
    assert z_of(20, 8, z_rule="honest") == pytest.approx(0.6744898, abs=1e-6)


def test_alie_vector_sign_std_and_explicit_z():
    c = ctx()
    rows_equal(A.get("alie", z=1.5)(c), MU + 1.5 * SIG)  # [3.5, 7]
    rows_equal(A.get("alie", z=1.5, sign="-")(c), MU - 1.5 * SIG)  # [0.5, 1]
    rows_equal(A.get("alie", z=1.5, sign=-1)(c), [0.5, 1.0])
    rows_equal(A.get("alie", z=1.0, std="unbiased")(c), MU + math.sqrt(2) * SIG)
    # auto: n=5, f=3 -> s = 0 -> fallback s = 1 (warned); Phi^-1(4/5) = 0.8416
    with pytest.warns(AttackWarning, match="falling back to s = 1"):
        out, info = A.get("alie").run(c)
    assert info["z"] == pytest.approx(0.8416212, abs=1e-6)
    rows_equal(out, MU + info["z"] * SIG)


def test_alie_auto_z_without_fallback_is_silent_and_used():
    c = AttackContext(honest=H, own=OWN, n=15, num_byzantine=7)  # z = 1.501
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, info = A.get("alie").run(c)
    assert "fallback" not in info
    rows_equal(out, MU + A.alie_z_max(15, 7) * SIG)


def test_alie_sources():
    c = ctx()
    own_mu, own_sig = OWN.mean(0), OWN.std(0, correction=0)
    rows_equal(A.get("alie", z=2.0, source="own")(c), own_mu + 2 * own_sig)
    allx = torch.cat([H, OWN])
    rows_equal(A.get("alie", z=2.0, source="all")(c), allx.mean(0) + 2 * allx.std(0, correction=0))
    assert A.get("alie", source="own").knowledge == "local"
    assert A.get("alie", source="all").knowledge == "omniscient"


@pytest.mark.parametrize(
    "n, f, z_rule, expect",
    [
        (4, 1, "n", 0.0),  # even n, f = 1: z_max = Phi^-1(1/2) = 0 exactly
        (15, 0, "n", 0.0),  # f = 0: z_max < 0, clamped
        (10, 6, "n", 1.2815516),  # s = 0: Byzantine majority -> s = 1, Phi^-1(9/10)
        (2, 2, "n", 0.0),  # s < 0 and n = 2: Phi^-1(1/2) = 0
        (4, 4, "honest", 0.0),  # no honest vector: undefined
    ],
)
def test_alie_fallback_rule(n, f, z_rule, expect):
    z, note = A.alie_z(n, f, z_rule=z_rule)
    assert z == pytest.approx(expect, abs=1e-6)
    assert note is not None and f"n={n}, f={f}" in note


def test_alie_zero_z_sends_mean_with_warning():
    c = AttackContext(honest=H, n=4, num_byzantine=1)
    with pytest.warns(AttackWarning, match="falls back to z = 0"):
        out, info = A.get("alie").run(c)
    rows_equal(out, MU)
    assert info["z"] == 0.0 and "fallback" in info


# ---------------------------------------------------------------------------------------- IPM


def test_ipm_sign_and_scale():
    c = ctx()
    rows_equal(A.get("ipm")(c), -0.1 * MU)  # default epsilon = 0.1
    rows_equal(A.get("ipm", epsilon=100)(c), [-200.0, -400.0])
    rows_equal(A.get("ipm", epsilon=0.5, source="own")(c), -0.5 * OWN.mean(0))
    # the inner product with the honest mean is negative: the point of the attack
    assert float(A.ipm(c, epsilon=2.0)[0] @ MU) == pytest.approx(-2.0 * float(MU @ MU))


# ----------------------------------------------------------------------- closed-form attacks


def test_simple_attacks():
    c = ctx()
    rows_equal(A.get("zero")(c), [0.0, 0.0])
    rows_equal(A.get("constant")(c), [-100.0, -100.0])
    rows_equal(A.get("constant", c=3)(c), [3.0, 3.0])
    assert torch.isnan(A.get("nan")(c)).all()
    assert (A.get("inf")(c) == math.inf).all()
    assert (A.get("inf", sign="-")(c) == -math.inf).all()
    assert torch.equal(A.get("sign_flip")(c), -OWN)
    rows_equal(A.get("sign_flip", mode="mean")(c), -MU)
    assert torch.equal(A.get("reversed")(c), -100.0 * OWN)
    assert torch.equal(A.get("reversed", scale=2.5)(c), -2.5 * OWN)
    rows_equal(A.get("mimic")(c), H[0])
    rows_equal(A.get("mimic", index=-1)(c), H[1])
    assert torch.equal(A.get("label_flip")(c), OWN)  # data-level: identity on own


def test_gaussian_generator_makes_it_deterministic():
    def draw(seed):
        c = ctx(generator=torch.Generator().manual_seed(seed))
        return A.get("gaussian", mean=1.0, std=0.5)(c)

    a, b, other = draw(7), draw(7), draw(8)
    assert torch.equal(a, b) and not torch.equal(a, other)
    assert a.shape == (3, 2) and not torch.equal(a[0], a[1])  # fresh draw per slot
    z = torch.randn((3, 2), generator=torch.Generator().manual_seed(7))
    assert torch.allclose(a, z * 0.5 + 1.0)
    # statistics of a large draw
    big = AttackContext(honest=torch.zeros(1, 4000), n=2, num_byzantine=1,
                        generator=torch.Generator().manual_seed(0))
    x = A.get("gaussian", mean=0.1, std=0.1)(big)
    assert float(x.mean()) == pytest.approx(0.1, abs=0.01)
    assert float(x.std()) == pytest.approx(0.1, abs=0.01)


# -------------------------------------------------------------------------- MinMax / MinSum


def test_minmax_minsum_hand_example():
    # x = [[0,0],[2,0]]: mu = [1,0], p = mu/|mu| = [1,0], diameter 2.
    # MinMax: max(|1-g|, |1+g|) <= 2 -> g* = 1; MinSum: (1-g)^2 + (1+g)^2 <= 4 -> g* = 1.
    c = AttackContext(honest=torch.tensor([[0.0, 0.0], [2.0, 0.0]]), n=3, num_byzantine=1)
    for name in ("minmax", "minsum"):
        out, info = A.get(name, direction="unit").run(c)
        assert info["gamma"] == pytest.approx(1.0)
        rows_equal(out, [0.0, 0.0])


@pytest.mark.parametrize("direction", ["std", "sign", "unit"])
def test_minmax_minsum_gamma_is_the_largest_feasible(direction):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(9, 6, generator=g, dtype=torch.float64) + 0.5
    c = AttackContext(honest=x, n=12, num_byzantine=3)
    mu = x.mean(0)
    p = A.perturbation(mu, x, direction)
    diam = torch.cdist(x, x).max()
    sq = torch.cdist(x, x) ** 2

    def minmax_ok(gam):
        return bool(torch.linalg.vector_norm(mu - gam * p - x, dim=1).max() <= diam + 1e-12)

    def minsum_ok(gam):
        return bool(((mu - gam * p - x) ** 2).sum() <= sq.sum(1).max() + 1e-9)

    for name, ok in (("minmax", minmax_ok), ("minsum", minsum_ok)):
        out, info = A.get(name, direction=direction).run(c)
        gam = info["gamma"]
        assert gam > 0
        assert torch.allclose(out[0], mu - gam * p)
        assert ok(gam * (1 - 1e-9)) and not ok(gam * (1 + 1e-6)), name
        # brute force over a grid agrees on the boundary
        grid = [gam * t / 200 for t in range(1, 400)]
        feasible = [t for t in grid if ok(t)]
        assert max(feasible) == pytest.approx(gam, rel=0.01)


# ----------------------------------------------------------------------------- label flipping


def test_label_flip_mapping():
    atk = A.get("label_flip")
    assert atk.data_level and atk.knowledge == "local" and not atk.shared
    y = torch.tensor([0, 1, 2, 9, 5])
    assert atk.transform_labels(y, 10).tolist() == [9, 8, 7, 0, 4]
    assert atk.transform_labels(y, 10).dtype == y.dtype
    assert y.tolist() == [0, 1, 2, 9, 5]  # not modified
    targeted = A.get("label_flip", source=1, target=7)
    assert targeted.transform_labels(torch.tensor([1, 2, 1, 0]), 10).tolist() == [7, 2, 7, 0]
    with pytest.raises(AttackError, match=r"labels must lie in \[0, 10\)"):
        atk.transform_labels(torch.tensor([3, 10]), 10)
    with pytest.raises(AttackError, match="integer tensor"):
        atk.transform_labels(torch.tensor([1.0]), 10)
    with pytest.raises(AttackError, match="target must be in"):
        A.get("label_flip", source=1, target=12).transform_labels(y, 10)
    with pytest.raises(AttackError, match="only defined for data-level"):
        A.get("alie").transform_labels(y, 10)


def test_fang_sends_every_coordinate_past_the_honest_range():
    """Fang et al. 2020: against the honest direction, beyond the honest extreme, by a factor in
    [1, b]; per-slot draws differ; the same generator seed gives the same vectors."""
    g = torch.Generator().manual_seed(3)
    H = torch.randn(9, 400, generator=g)
    H[:, :50] += 3.0  # coordinates with a positive minimum
    H[:, 50:100] -= 3.0  # and with a negative maximum

    def ctx(seed):
        return AttackContext(honest=H, n=12, num_byzantine=3, generator=torch.Generator().manual_seed(seed))

    B = A.get("fang", b=3.0)(ctx(0))
    mu, lo, hi = H.mean(0), H.min(0).values, H.max(0).values
    down = mu > 0
    for row in B:
        assert bool((row[down] <= lo[down]).all()) and bool((row[~down] >= hi[~down]).all())
        ratio = torch.where(down, row / lo, row / hi)  # factor or 1/factor, in [1/b, b]
        assert bool(((ratio >= 1 / 3.0 - 1e-6) & (ratio <= 3.0 + 1e-6)).all())
    assert not torch.equal(B[0], B[1])
    assert torch.equal(B, A.get("fang", b=3.0)(ctx(0))) and not torch.equal(B, A.get("fang", b=3.0)(ctx(1)))
    assert torch.equal(A.get("fang", b=1.0)(ctx(0)), torch.where(down, lo, hi).expand(3, -1))
    # it defeats the coordinate median it was designed against: the median moves against mu
    med = torch.cat([H, B]).median(dim=0).values
    assert float((med - H.median(dim=0).values)[down].max()) <= 0.0
    with pytest.raises(AttackError, match=r"fang: b must be >= 1"):
        A.get("fang", b=0.5)


def test_data_level_attack_carries_its_label_transform():
    """A data-level attack registers its own label transform: base knows no particular attack."""
    from byzantium.attacks.base import REGISTRY, register

    def shift(y, num_classes, *, by=1):
        return (y + by) % num_classes

    @register("test_label_shift", knowledge="local", shared=False, labels=shift)
    def label_shift(ctx, *, by=1):
        return ctx.need_own("test_label_shift")

    try:
        atk = A.get("test_label_shift", by=3)
        assert atk.data_level and not A.get("ipm").data_level
        assert atk.transform_labels(torch.tensor([0, 5, 8]), 10).tolist() == [3, 8, 1]
        assert ("test_label_shift", "local", "", "data", "by=1") in A.describe()
    finally:
        REGISTRY.remove("test_label_shift")
