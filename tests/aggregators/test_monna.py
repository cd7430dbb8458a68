import numpy as np
import pytest
import torch

from byzantium.aggregators import AggregatorError, ConstraintError, get
from byzantium.aggregators.monna import monna


def brute(a: np.ndarray, f: int, pivot: int) -> np.ndarray:
    d = ((a - a[pivot]) ** 2).sum(axis=1)
    others = sorted((d[i], i) for i in range(len(a)) if i != pivot)
    chosen = [pivot] + [i for _, i in others[: len(a) - f - 1]]
    return a[chosen].mean(axis=0)


def test_byzfl_vector_and_tie_to_lower_index():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    # pivot 1 is equally far from 0 and 2: the lower index (0) is taken
    assert monna(x, f=1, pivot=1).tolist() == [2.5, 3.5, 4.5]
    assert monna(x, f=1, pivot=2).tolist() == [5.5, 6.5, 7.5]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_against_brute_force(dtype):
    rng = np.random.default_rng(0)
    for _ in range(25):
        n = int(rng.integers(3, 12))
        f = int(rng.integers(0, (n - 1) // 2 + 1))
        p = int(rng.integers(0, n))
        a = rng.normal(size=(n, 4))
        out = monna(torch.tensor(a, dtype=dtype), f=f, pivot=p)
        assert out.dtype == dtype
        assert np.allclose(out.double().numpy(), brute(a, f, p), atol=1e-6)


def test_pivot_is_always_included_even_among_duplicates():
    x = torch.tensor([[0.0], [0.0], [0.0], [5.0], [6.0]])
    # n - f = 3: the pivot (a zero) and its two nearest others, the other two zeros
    assert monna(x, f=2, pivot=2).item() == 0.0
    assert monna(x, f=2, pivot=3).item() == pytest.approx(11 / 3)  # 5, then 6, then 0 (index 0)
    y = torch.tensor([[1.0], [1.0], [0.0], [9.0], [9.0]])
    assert monna(y, f=2, pivot=2).item() == pytest.approx(2 / 3)


def test_robust_with_an_honest_pivot_and_permutation():
    g = torch.Generator().manual_seed(1)
    n, f = 11, 5
    x = torch.randn(n, 15, generator=g)
    x[n - f :] = 1e6 * torch.randn(f, 15, generator=g)
    out = monna(x, f=f, pivot=3)
    assert torch.allclose(out, x[: n - f].mean(dim=0), atol=1e-6)
    perm = torch.randperm(n, generator=g)
    new_pivot = int((perm == 3).nonzero())
    assert torch.allclose(monna(x[perm], f=f, pivot=new_pivot), out, atol=1e-6)


def test_errors_and_registry():
    x = torch.randn(5, 2)
    with pytest.raises(ConstraintError, match=r"monna: requires n > 2f, got n=5, f=3"):
        monna(x, f=3)
    msg = r"monna: pivot must be an index in \[0, n\), got pivot=5"
    with pytest.raises(AggregatorError, match=msg):
        monna(x, f=1, pivot=5)
    assert torch.equal(get("monna", f=1, pivot=2)(x), monna(x, f=1, pivot=2))
    assert torch.allclose(monna(x), x.mean(dim=0))


def test_pivot_follows_its_row_when_malformed_rows_are_dropped() -> None:
    import pytest
    from byzantium.aggregators import NonFiniteError, get, monna

    finite = torch.randn(9, 1, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x = torch.cat([torch.full((1, 1), float("nan"), dtype=torch.float64), finite])
    # row 0 is dropped (counted against f): pivot 4 of x is pivot 3 of the finite rows
    expected = monna(finite, f=3, pivot=3)
    assert not torch.equal(expected, monna(finite, f=3, pivot=4))  # the test discriminates
    torch.testing.assert_close(get("monna", f=4, pivot=4)(x), expected)
    torch.testing.assert_close(monna(x, f=4, pivot=4), expected)
    with pytest.raises(NonFiniteError, match="pivot"):
        get("monna", f=4, pivot=0)(x)
