import numpy as np
import pytest
import torch

from byzantium.aggregators import ConstraintError, AggregatorError, get
from byzantium.aggregators.krum import bulyan, bulyan_selection, krum, krum_scores, multi_krum


def brute_scores(a: np.ndarray, f: int) -> np.ndarray:
    n = len(a)
    k = max(n - f - 2, 0)
    out = []
    for i in range(n):
        d = sorted(float(((a[i] - a[j]) ** 2).sum()) for j in range(n) if j != i)
        out.append(sum(d[:k]))
    return np.array(out)


def brute_meamed(a: np.ndarray, f: int) -> np.ndarray:
    """Per coordinate: mean of the n - f values closest to the (midpoint) median."""
    n = len(a)
    med = np.median(a, axis=0)
    order = np.argsort(np.abs(a - med), axis=0, kind="stable")[: n - f]
    return np.take_along_axis(a, order, axis=0).mean(axis=0)


def brute_order(a: np.ndarray, f: int) -> list[int]:
    """Indices by (k-neighbour score, then k+1, k+2, ... neighbours, then index)."""
    n = len(a)
    k = max(n - f - 2, 0)
    keys = []
    for i in range(n):
        d = sorted(float(((a[i] - a[j]) ** 2).sum()) for j in range(n) if j != i)
        sums = [sum(d[:j]) for j in range(max(k, 1), n)]
        keys.append(([0.0] if k == 0 else []) + sums + [i])
    return [key[-1] for key in sorted(keys)]


def brute_bulyan(a: np.ndarray, f: int) -> np.ndarray:
    rem = list(range(len(a)))
    sel = []
    for _ in range(len(a) - 2 * f):
        sel.append(rem.pop(brute_order(a[rem], f)[0]))
    return brute_meamed(a[sorted(sel)], 2 * f)


def honest_and_byzantine(n, f, d, seed, scale=1e6):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    x[n - f :] = scale * (1 + torch.rand(f, d, generator=g, dtype=torch.float64))
    return x


def test_scores_match_definition():
    rng = np.random.default_rng(0)
    for n, f in [(5, 0), (5, 1), (8, 2), (9, 3)]:
        a = rng.normal(size=(n, 4))
        from byzantium.aggregators._distances import sq_distances_numpy

        s = krum_scores(sq_distances_numpy(torch.tensor(a)), f)
        assert np.allclose(s, brute_scores(a, f), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_krum_and_multi_krum_against_brute_force(dtype):
    rng = np.random.default_rng(1)
    for _ in range(20):
        n = int(rng.integers(5, 11))
        f = int(rng.integers(0, (n - 3) // 2 + 1))
        a = rng.normal(size=(n, 3))
        x = torch.tensor(a, dtype=dtype)
        order = brute_order(a, f)
        out = krum(x, f=f)
        assert out.dtype == dtype and torch.equal(out, x[order[0]])
        m = int(rng.integers(1, n + 1))
        ref = a[order[:m]].mean(axis=0)
        assert np.allclose(multi_krum(x, f=f, m=m).double().numpy(), ref, atol=1e-6)
        ref = a[order[: n - f]].mean(axis=0)
        assert np.allclose(multi_krum(x, f=f).double().numpy(), ref, atol=1e-6)
    assert torch.equal(multi_krum(x, f=f, m=1), krum(x, f=f))


def test_ties_go_to_the_lowest_index_and_duplicates_tie_exactly():
    # a regular polygon: every input has the same score, so Krum returns input 0
    t = torch.arange(6, dtype=torch.float64) * (2 * torch.pi / 6)
    x = torch.stack([torch.cos(t), torch.sin(t)], dim=1) * 1e3 + 7.0
    x[3] = x[0]  # not a polygon any more: 0 and 3 coincide and tie
    from byzantium.aggregators._distances import sq_distances_numpy

    s = krum_scores(sq_distances_numpy(x.float()), 1)
    assert s[0] == s[3]
    g = torch.Generator().manual_seed(5)
    y = torch.randn(10, 50, generator=g) + 20.0
    y[6:] = y[9]  # four identical (ALIE-style) vectors
    s = krum_scores(sq_distances_numpy(y), 3)
    assert s[6] == s[7] == s[8] == s[9]
    assert torch.equal(krum(y, f=3), y[6])  # they win (closest cluster) and the lowest index is 6


def test_permutation_invariance():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(11, 30, generator=g)
    perm = torch.randperm(11, generator=g)
    assert torch.equal(krum(x, f=2), krum(x[perm], f=2))
    assert torch.allclose(multi_krum(x, f=2), multi_krum(x[perm], f=2), atol=1e-6)
    assert torch.allclose(bulyan(x, f=2), bulyan(x[perm], f=2), atol=1e-6)


def test_bulyan_against_brute_force():
    rng = np.random.default_rng(7)
    for n, f in [(7, 1), (8, 1), (11, 2), (12, 2), (15, 3)]:
        a = rng.normal(size=(n, 6))
        out = bulyan(torch.tensor(a), f=f).numpy()
        assert np.allclose(out, brute_bulyan(a, f), atol=1e-12)
    a = rng.normal(size=(7, 4))
    assert np.allclose(bulyan(torch.tensor(a), f=0).numpy(), a.mean(axis=0))


def test_bulyan_slabs_equal_one_gather(monkeypatch):
    import sys

    krum_module = sys.modules["byzantium.aggregators.krum"]  # the package attribute is the rule

    g = torch.Generator().manual_seed(10)
    x = torch.randn(11, 1001, generator=g)
    whole = bulyan(x, f=2)
    monkeypatch.setattr(krum_module, "_SLAB_BYTES", 7 * 4 * 100)  # 100-column slabs
    assert torch.equal(bulyan(x, f=2), whole)


def test_bulyan_selection_is_iterated_not_one_shot():
    # Points 0, 1, 2, 3, 10, 11, 12 on a line, n=7, f=1, theta=5 (hand-computed):
    # round 1 (4 neighbours): scores 114, 87, 70, 63, 118, 147, 186 -> input 3;
    # round 2 (3) over {0,1,2,4,5,6}: 105, 83, 69, 69, 83, 105 -> 2 and 10 tie at 69; with 4
    #   neighbours 70 < 150 -> input 2;
    # round 3 (2) over {0,1,4,5,6}: 101, 82, 5, 2, 5 -> input 5 (value 11);
    # round 4 (1) over {0,1,4,6}: 1, 1, 4, 4 -> 0 and 1 tie (mutual nearest neighbours); with 2
    #   neighbours 101 vs 82 -> input 1;
    # round 5 (0) over {0,4,6}: nearest 100, 4, 4 -> 10 and 12 tie; two nearest 104 < 148
    #   -> input 4.
    a = np.array([[0.0], [1.0], [2.0], [3.0], [10.0], [11.0], [12.0]])
    from byzantium.aggregators._distances import sq_distances_numpy

    d = sq_distances_numpy(torch.tensor(a))
    assert bulyan_selection(d, 1) == [3, 2, 5, 1, 4]
    # a one-shot selection (ByzShield) would take the 5 best round-1 scores: {0, 1, 2, 3, 4}
    assert sorted(np.argsort(krum_scores(d, 1), kind="stable")[:5].tolist()) == [0, 1, 2, 3, 4]
    # then Meamed over {1, 2, 3, 10, 11} with f' = 2: the beta = 3 values closest to the median 3
    assert bulyan(torch.tensor(a), f=1).item() == (1.0 + 2.0 + 3.0) / 3


@pytest.mark.parametrize("rule", [krum, multi_krum, bulyan])
def test_robust_to_huge_inputs(rule):
    n, f, d = 11, 2, 20
    x = honest_and_byzantine(n, f, d, seed=8)
    out = rule(x, f=f)
    h = x[: n - f]
    assert (out >= h.min(dim=0).values - 1e-12).all() and (out <= h.max(dim=0).values + 1e-12).all()
    if rule is krum:
        assert any(torch.equal(out, r) for r in h)


def test_constraints_and_parameters():
    x = torch.randn(6, 3)
    with pytest.raises(ConstraintError, match=r"krum: requires n > 2f \+ 2, got n=6, f=2"):
        krum(x, f=2)
    with pytest.raises(ConstraintError, match=r"multi_krum: requires n > 2f \+ 2, got n=6, f=2"):
        multi_krum(x, f=2)
    with pytest.raises(ConstraintError, match=r"bulyan: requires n >= 4f \+ 3, got n=6, f=1"):
        bulyan(x, f=1)
    with pytest.raises(AggregatorError, match="multi_krum: m must satisfy 1 <= m <= n, got m=7"):
        multi_krum(x, f=1, m=7)
    assert torch.equal(get("krum", f=1)(x), krum(x, f=1))
    assert torch.allclose(get("multi_krum", f=1, m=2)(x), multi_krum(x, f=1, m=2))


def test_nonfinite_rows_count_against_f():
    g = torch.Generator().manual_seed(9)
    x = torch.randn(8, 5, generator=g)
    y = x.clone()
    y[2, 1] = float("nan")
    out = krum(y, f=2)
    assert torch.isfinite(out).all()
    keep = [i for i in range(8) if i != 2]
    assert torch.equal(out, krum(x[keep], f=1))


def test_brute_meamed_matches_definition_on_a_column():
    # sanity of the reference itself: n=5, f=2 -> mean of the 3 values closest to the median 3
    a = np.array([[1.0], [3.0], [4.0], [10.0], [2.5]])
    assert brute_meamed(a, 2)[0] == pytest.approx((3.0 + 4.0 + 2.5) / 3)
