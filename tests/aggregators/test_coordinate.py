"""Coordinate-wise rules and the sorting-network selection behind them."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from byzantium.aggregators import ConstraintError, coordinate, meamed, mean, median, trimmed_mean
from byzantium.aggregators import _select as S


def brute_meamed(x: np.ndarray, f: int) -> np.ndarray:
    """Per column: over the windows of k = n-f consecutive sorted values, those with the smallest
    largest deviation from the median; the average of their means (docstring of meamed)."""
    n, d = x.shape
    k = n - f
    out = np.empty(d)
    for j in range(d):
        s = np.sort(x[:, j])
        m = s[n // 2] if n % 2 else s[n // 2 - 1] * 0.5 + s[n // 2] * 0.5
        worst = [max(m - s[i], s[i + k - 1] - m) for i in range(f + 1)]
        means = [s[i : i + k].mean() for i in range(f + 1) if worst[i] == min(worst)]
        out[j] = np.mean(means)
    return out


# ----------------------------------------------------------------------------- closed forms


def test_closed_form_small_case():
    x = torch.tensor([[1.0, -5.0], [2.0, 0.0], [3.0, 1.0], [4.0, 2.0], [100.0, 3.0]])
    assert torch.equal(mean(x), torch.tensor([22.0, 0.2]))
    assert torch.equal(median(x), torch.tensor([3.0, 1.0]))
    assert torch.equal(trimmed_mean(x, f=1), torch.tensor([3.0, 1.0]))
    assert torch.equal(trimmed_mean(x, f=2), torch.tensor([3.0, 1.0]))
    # column 0: median 3, the 3 nearest are 2, 3, 4; column 1: median 1, nearest 0, 1, 2
    assert torch.equal(meamed(x, f=2), torch.tensor([3.0, 1.0]))
    # f=1: column 0 keeps 1..4 (mean 2.5); column 1 keeps 0..3 (mean 1.5)
    assert torch.equal(meamed(x, f=1), torch.tensor([2.5, 1.5]))


def test_even_n_median_is_midpoint():
    x = torch.tensor([[1.0], [2.0], [4.0], [10.0]])
    assert torch.equal(median(x), torch.tensor([3.0]))
    assert torch.equal(trimmed_mean(x, f=1), torch.tensor([3.0]))


def test_meamed_ties_average_the_equally_near_windows():
    # n=4: median 1.5, deviations 1.5, .5, .5, .5: the three at .5 are the unique nearest set
    x = torch.tensor([[0.0], [1.0], [2.0], [2.0]])
    assert torch.allclose(meamed(x, f=1), torch.tensor([5.0 / 3]))
    # median 1, k=3: {0, 1, 1} and {1, 1, 2} are equally near (largest deviation 1): mean of 2/3, 4/3
    y = torch.tensor([[0.0], [1.0], [1.0], [2.0], [5.0]])
    assert torch.equal(meamed(y, f=2), torch.tensor([1.0]))
    # sorted 0, 1, 1, 2, 2; median 1, k=3: all three windows have largest deviation 1
    z = torch.tensor([[2.0], [1.0], [0.0], [2.0], [1.0]])
    assert torch.allclose(meamed(z, f=2), torch.tensor([(2 / 3 + 4 / 3 + 5 / 3) / 3]))
    for col, f in ((x, 1), (y, 2), (z, 2)):
        assert np.allclose(meamed(col, f=f).numpy(), brute_meamed(col.double().numpy(), f))


@pytest.mark.parametrize("n, f", [(7, 4), (15, 10), (5, 4), (6, 3)])
def test_raw_meamed_accepts_f_of_half_or_more(n, f):
    # Bulyan calls meamed.__wrapped_rule__(selected, f=2f) with n - 2f selected rows, f >= n/2
    g = np.random.default_rng(n)
    for data in (g.standard_normal((n, 200)), g.integers(0, 3, (n, 200)).astype(float)):
        x = torch.from_numpy(data)
        generic = coordinate._meamed_sorted(S.sort_rows(x), f)  # the non-CPU path
        for out in (meamed.__wrapped_rule__(x, f=f), generic):
            assert np.allclose(out.numpy(), brute_meamed(data, f), rtol=1e-13, atol=1e-13)
    with pytest.raises(ConstraintError, match=f"meamed: requires 0 <= f < n, got n={n}, f={n}"):
        meamed.__wrapped_rule__(torch.zeros(n, 2), f=n)


def test_f_zero_is_the_mean():
    x = torch.randn(7, 5, dtype=torch.float64)
    assert torch.equal(trimmed_mean(x, f=0), x.mean(0))
    assert torch.equal(meamed(x, f=0), x.mean(0))


def test_single_row():
    x = torch.tensor([[1.0, 2.0, 3.0]])
    for out in (median(x), trimmed_mean(x), meamed(x), mean(x)):
        assert torch.equal(out, x[0])


@pytest.mark.parametrize("rule", [trimmed_mean, meamed, median])
def test_constraint_n_gt_2f(rule):
    with pytest.raises(ConstraintError, match=rf"^{rule.__name__}: requires n > 2f, got n=6, f=3$"):
        rule(torch.zeros(6, 2), f=3)


# ----------------------------------------------------------------------------- brute force


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 13, 25, 26, 64, 97, 120])
def test_against_numpy_random_and_tied(n):
    g = np.random.default_rng(n)
    for data in (g.standard_normal((n, 300)), g.integers(0, 3, (n, 300)).astype(float)):
        x = torch.from_numpy(data)
        assert np.array_equal(median(x).numpy(), np.median(data, axis=0))
        for f in sorted({1, (n - 1) // 4, (n - 1) // 2} - {0}):
            if 2 * f >= n:
                continue
            s = np.sort(data, axis=0)
            assert np.allclose(trimmed_mean(x, f=f).numpy(), s[f : n - f].mean(0), rtol=1e-13, atol=1e-13)
            assert np.allclose(meamed(x, f=f).numpy(), brute_meamed(data, f), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numpy_path_matches_torch_sort_path(dtype, monkeypatch):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(25, 70_000, generator=g, dtype=dtype)  # several column blocks, threaded
    x[:, :1000] = torch.randint(0, 3, (25, 1000), generator=g).to(dtype)  # exact ties
    fast = [median(x), trimmed_mean(x, f=6), meamed(x, f=6)]
    monkeypatch.setattr(coordinate, "uses_numpy_path", lambda t: False)
    monkeypatch.setattr(S, "uses_numpy_path", lambda t: False)
    slow = [median(x), trimmed_mean(x, f=6), meamed(x, f=6)]
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    assert torch.equal(fast[0], slow[0])
    for a, b in zip(fast[1:], slow[1:]):
        assert a.dtype == dtype and torch.allclose(a, b, rtol=tol, atol=tol)


def test_result_does_not_depend_on_threads_or_blocks(monkeypatch):
    x = torch.randn(25, 50_000, generator=torch.Generator().manual_seed(2))
    ref = [median(x), trimmed_mean(x, f=5), meamed(x, f=5)]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        monkeypatch.setattr(S, "_BLOCK_BYTES", 4096)
        again = [median(x), trimmed_mean(x, f=5), meamed(x, f=5)]
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(ref, again):
        assert torch.equal(a, b)


# ----------------------------------------------------------------------------- robustness


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_outliers_stay_outside(dtype):
    g = torch.Generator().manual_seed(4)
    n, f = 11, 3
    honest = torch.randn(n - f, 50, generator=g, dtype=dtype)
    byz = torch.full((f, 50), 1e6, dtype=dtype)
    byz[1] = -1e6
    x = torch.cat([byz[:2], honest, byz[2:]])
    lo, hi = honest.min(0).values, honest.max(0).values
    for out in (median(x, f=f), trimmed_mean(x, f=f), meamed(x, f=f)):
        assert out.dtype == dtype and out.shape == (50,)
        assert bool(((out >= lo) & (out <= hi)).all())
    # Meamed with f Byzantine far away averages exactly the honest inputs
    assert torch.allclose(meamed(x, f=f), honest.mean(0))


def test_byzantine_values_near_the_float_maximum(monkeypatch):
    # sums of the windows holding them overflow; they are never selected and leave no NaN
    g = torch.Generator().manual_seed(6)
    honest = torch.randn(6, 30, generator=g)
    x = torch.cat([torch.full((2, 30), 3.3e38), honest, torch.full((1, 30), -3.3e38)])
    lo, hi = honest.min(0).values, honest.max(0).values
    for generic in (False, True):
        if generic:
            monkeypatch.setattr(coordinate, "uses_numpy_path", lambda t: False)
            monkeypatch.setattr(S, "uses_numpy_path", lambda t: False)
        for out in (median(x, f=3), trimmed_mean(x, f=3), meamed(x, f=3)):
            assert bool(((out >= lo) & (out <= hi)).all())
        assert torch.allclose(meamed(x, f=3), honest.mean(0), atol=1e-6)


def test_input_not_modified_and_grad_tensor_accepted():
    x = torch.randn(9, 40, requires_grad=True)
    before = x.detach().clone()
    for out in (median(x), trimmed_mean(x, f=2), meamed(x, f=2)):
        assert out.shape == (40,)
    assert torch.equal(x.detach(), before)


def test_noncontiguous_input():
    x = torch.randn(30, 9, dtype=torch.float64).T  # (9, 30) transposed view
    assert np.allclose(median(x).numpy(), np.median(x.numpy(), axis=0))


# ----------------------------------------------------------------------------- networks


@pytest.mark.parametrize("n", range(1, 13))
def test_merge_exchange_sorts_all_zero_one_inputs(n):
    # 0-1 principle: a comparator network sorts everything iff it sorts every 0-1 input
    ops = S.merge_exchange(n)
    for bits in itertools.product((0, 1), repeat=n):
        v = list(bits)
        for i, j in ops:
            if v[i] > v[j]:
                v[i], v[j] = v[j], v[i]
        assert v == sorted(bits)


def test_merge_exchange_size():
    assert len(S.merge_exchange(25)) == 138
    assert len(S.merge_exchange(16)) == 63  # Batcher's count for 16


@pytest.mark.parametrize("n, ranks", [(25, (12,)), (10, (4, 5)), (25, tuple(range(6, 19))), (40, (0, 39, 20)), (7, ())])
def test_pruned_network_computes_requested_ranks(n, ranks):
    ops, n_buf, out_rows = S.pruned_network(n, ranks)
    assert len(ops) <= 2 * len(S.merge_exchange(n))
    g = np.random.default_rng(0)
    data = g.integers(0, 5, (n, 500)).astype(float)
    rows = list(data) + [np.empty(500) for _ in range(n_buf)]
    for kind, a, b, dst in ops:
        assert dst >= n  # inputs are never written
        (np.minimum if kind == 0 else np.maximum)(rows[a], rows[b], out=rows[dst])
    s = np.sort(data, axis=0)
    for r, row in zip(ranks, out_rows):
        assert np.array_equal(rows[row], s[r])
    if not ranks:
        assert ops == ()


def test_median_prunes_comparators():
    ops, _, _ = S.pruned_network(25, (12,))
    assert len(ops) < 2 * 138 * 0.75  # fewer ufunc calls than a full sort (2 per comparator)


def test_legacy_helpers():
    x = torch.randn(9, 33, dtype=torch.float64)
    p = S.partition_rows(x, 3)
    s = torch.sort(x, 0).values
    assert torch.equal(p[3], s[3])
    assert bool((p[:3] <= p[3]).all()) and bool((p[4:] >= p[3]).all())
    assert np.array_equal(S.coordinate_median(x).numpy(), np.median(x.numpy(), axis=0))
