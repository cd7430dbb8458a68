"""File sampling: IID and Dirichlet splits, determinism, the default per-step generator, errors."""

from __future__ import annotations

import hashlib

import pytest
import torch

from byzantium.seeding import derive_seed, generator
from byzantium.training.datasets import DataError
from byzantium.training.split import FileSampler, dirichlet_partition, gather_files, label_skew


def _labels(n=2000, c=10, seed=0):
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)) % c


def test_iid_sampler_disjoint_and_deterministic():
    s = FileSampler(_labels(), num_files=25, batch_size=253, seed=7)
    assert s.file_size == 10  # floor(253 / 25); the last 3 are not drawn (ByzShield)
    idx = s.sample(4)
    assert idx.shape == (25, 10) and idx.dtype == torch.int64
    assert idx.unique().numel() == 250 and int(idx.min()) >= 0 and int(idx.max()) < 2000
    assert torch.equal(idx, FileSampler(_labels(), num_files=25, batch_size=253, seed=7).sample(4))
    assert not torch.equal(idx, s.sample(5))
    assert not torch.equal(idx, FileSampler(_labels(), num_files=25, batch_size=253, seed=8).sample(4))
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(s.sample(0, g1), s.sample(99, g2))  # an explicit generator decides alone
    x = torch.arange(2000.0).unsqueeze(1)
    xf, yf = gather_files(x, _labels(), idx)
    assert xf.shape == (25, 10, 1) and torch.equal(xf[..., 0].long(), idx)


def _historical_seed(seed: int, step: int) -> int:
    """The sampler's per-step seed as it was derived before ``byzantium.seeding`` existed."""
    digest = hashlib.sha256(f"byzantium.files:{seed}:{step}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@pytest.mark.parametrize("split", ["iid", "dirichlet"])
def test_default_generator_is_the_files_stream_with_its_historical_seed(split):
    alpha = 0.5 if split == "dirichlet" else None
    s = FileSampler(_labels(), num_files=10, batch_size=50, split=split, alpha=alpha, seed=3)
    for step in (0, 1, 41, 2**40):
        assert derive_seed(3, "files", step) == _historical_seed(3, step)
        old = torch.Generator().manual_seed(_historical_seed(3, step))
        assert torch.equal(s.sample(step), s.sample(step, old))
        assert torch.equal(s.sample(step), s.sample(step, generator(3, "files", step)))
    # the other streams keep SplitMix64: "data" (what the runtimes pass) is a different draw
    assert derive_seed(3, "data", 1) != _historical_seed(3, 1)
    assert not torch.equal(s.sample(1), s.sample(1, generator(3, "data", 1)))


def test_sampler_validation():
    y = _labels(100)
    with pytest.raises(DataError, match="batch_size // num_files must be >= 1"):
        FileSampler(y, num_files=10, batch_size=9)
    with pytest.raises(DataError, match="training set has 100"):
        FileSampler(y, num_files=10, batch_size=200)
    with pytest.raises(DataError, match="alpha is only used"):
        FileSampler(y, num_files=2, batch_size=4, alpha=1.0)
    with pytest.raises(DataError, match="finite alpha > 0"):
        FileSampler(y, num_files=2, batch_size=4, split="dirichlet", alpha=0.0)
    with pytest.raises(DataError, match="split must be"):
        FileSampler(y, num_files=2, batch_size=4, split="noniid")
    with pytest.raises(DataError, match="num_files must be a positive int"):
        FileSampler(y, num_files=0, batch_size=4)
    with pytest.raises(DataError, match="only defined for split='dirichlet'"):
        FileSampler(y, num_files=2, batch_size=4).shard_label_counts()


def test_dirichlet_partition_covers_and_skews():
    y = _labels()
    skew = {}
    for alpha in (0.1, 1.0, 100.0):
        s = FileSampler(y, num_files=10, batch_size=50, split="dirichlet", alpha=alpha, seed=3)
        everything = torch.cat(s.shards).sort().values
        assert torch.equal(everything, torch.arange(2000))  # each index in exactly one shard
        assert min(len(sh) for sh in s.shards) >= 5
        counts = s.shard_label_counts()
        assert counts.shape == (10, 10) and int(counts.sum()) == 2000
        skew[alpha] = label_skew(counts)
        idx = s.sample(11)
        assert idx.shape == (10, 5)
        for i in range(10):  # file i draws distinct examples from shard i only
            assert idx[i].unique().numel() == 5
            assert torch.isin(idx[i], s.shards[i]).all()
        assert torch.equal(idx, s.sample(11))
    assert skew[0.1] > skew[1.0] > skew[100.0]
    assert skew[0.1] > 0.5 and skew[100.0] < 0.1


def test_dirichlet_partition_is_the_samplers_shards():
    y = _labels()
    s = FileSampler(y, num_files=6, batch_size=60, split="dirichlet", alpha=0.7, seed=5)
    shards = dirichlet_partition(y.numpy(), 6, 0.7, 10, 10, 5, 1000)
    assert all(torch.equal(a, torch.from_numpy(b)) for a, b in zip(s.shards, shards))


def test_dirichlet_impossible_partition_is_reported():
    with pytest.raises(DataError, match="raise alpha"):
        FileSampler(_labels(200), num_files=25, batch_size=200, split="dirichlet", alpha=0.001, max_tries=5)


def test_label_skew_closed_forms():
    assert label_skew(torch.tensor([[2, 0], [0, 2]])) == pytest.approx(0.5)
    assert label_skew(torch.tensor([[3, 1], [3, 1]])) == pytest.approx(0.0)
