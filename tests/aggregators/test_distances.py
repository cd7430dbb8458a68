import numpy as np
import pytest
import torch

from byzantium.aggregators import _distances
from byzantium.aggregators._distances import (
    mean_of_rows,
    pairwise_sq_distances,
    sq_distances_numpy,
)


def exact(x: torch.Tensor) -> np.ndarray:
    """Reference: norms of differences in float64 (no Gram trick)."""
    a = x.detach().double().numpy()
    return ((a[:, None, :] - a[None, :, :]) ** 2).sum(axis=2)


def rel_err(d: np.ndarray, ref: np.ndarray) -> float:
    off = ~np.eye(len(ref), dtype=bool)
    return float(np.max(np.abs(d - ref)[off] / ref[off]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_differences_and_invariants(dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 40, generator=g, dtype=dtype)
    d = pairwise_sq_distances(x)
    assert d.shape == (9, 9) and d.dtype == torch.float64 and d.device == x.device
    dn = d.numpy()
    assert np.array_equal(dn, dn.T)
    assert (np.diagonal(dn) == 0).all() and (dn >= 0).all()
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert rel_err(dn, exact(x)) < tol


def test_block_paths_cover_remainders_and_strided_input():
    # more columns than one block, not a multiple of it; and a transposed (non-unit-stride) view
    k = _distances._K
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 2 * k + 7, generator=g)
    ref = exact(x)
    assert rel_err(sq_distances_numpy(x), ref) < 1e-5
    xt = x.T.contiguous().T  # same values, stride (1, n)
    assert xt.stride(-1) != 1
    assert rel_err(sq_distances_numpy(xt), ref) < 1e-5
    assert rel_err(sq_distances_numpy(x.double()), ref) < 1e-12


def test_identical_rows_tie_exactly():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(7, 333, generator=g) * 10 + 5  # norms >> 0: identical rows cancel badly
    x[4] = x[1]
    x[6] = x[1]
    x[5] = x[2]
    d = sq_distances_numpy(x)
    assert d[1, 4] == d[1, 6] == d[4, 6] == d[2, 5] == 0.0
    # whole distance rows (and columns) of identical inputs are bit-identical
    assert np.array_equal(d[1], d[4]) and np.array_equal(d[1], d[6])
    assert np.array_equal(d[2], d[5]) and np.array_equal(d[:, 2], d[:, 5])
    assert d[0, 1] > 0 and d[0, 2] > 0


def test_nearly_identical_rows_are_recentred():
    # a tight cluster far from the origin: |x|^2 ~ 1e7 while distances^2 ~ 1e-2
    g = torch.Generator().manual_seed(3)
    x = 1e2 + 1e-3 * torch.randn(6, 1000, generator=g)
    x = x.double().float()
    d = sq_distances_numpy(x)
    assert rel_err(d, exact(x)) < 1e-3
    assert (d[~np.eye(6, dtype=bool)] > 0).all()


def test_huge_rows_do_not_spoil_honest_distances():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(10, 500, generator=g)
    x[7:] = 1e6 * torch.randn(3, 500, generator=g)
    d = sq_distances_numpy(x)
    ref = exact(x)
    assert rel_err(d[:7, :7], ref[:7, :7]) < 1e-5
    assert rel_err(d, ref) < 1e-5


def test_small_shapes_and_bad_input():
    assert sq_distances_numpy(torch.ones(1, 3)).tolist() == [[0.0]]
    assert sq_distances_numpy(torch.zeros(3, 0)).tolist() == [[0.0] * 3] * 3
    with pytest.raises(ValueError, match="pairwise_sq_distances"):
        pairwise_sq_distances(torch.ones(3))
    with pytest.raises(ValueError, match="pairwise_sq_distances"):
        pairwise_sq_distances(torch.ones(3, 2, dtype=torch.int64))


def test_mean_of_rows():
    x = torch.arange(12.0).reshape(4, 3)
    assert torch.equal(mean_of_rows(x, [1, 3]), (x[1] + x[3]) / 2)
    assert torch.equal(mean_of_rows(x, [2]), x[2])
    assert mean_of_rows(x.double(), [0, 1]).dtype == torch.float64
