"""Data sets and file sampling: shapes, dtypes, determinism, cache, CIFAR-10 files, splits."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import byzantium.training.data as data_mod
from byzantium.training.data import (
    DataError,
    FileSampler,
    gather_files,
    label_skew,
    load_dataset,
)


def _same(a, b) -> bool:
    return all(
        torch.equal(getattr(a, k), getattr(b, k)) for k in ("x_train", "y_train", "x_test", "y_test")
    )


# ---------------------------------------------------------------------------------- MNIST-1D


def test_mnist1d_shapes_cache_and_determinism(tmp_path, monkeypatch):
    np_state = np.random.get_state()
    a = load_dataset("mnist1d", root=tmp_path, train_size=123, test_size=45, seed=3)
    # the generator seeds numpy's global RNG; we restore it
    assert all(np.array_equal(u, v) for u, v in zip(np.random.get_state()[1:2], np_state[1:2]))
    assert a.x_train.shape == (123, 40) and a.x_test.shape == (45, 40)
    assert a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    assert a.num_classes == 10 and a.input_shape == (40,) and a.task == "classification"
    assert int(a.y_train.min()) >= 0 and int(a.y_train.max()) <= 9
    assert len(list(tmp_path.glob("mnist1d-*.npz"))) == 1

    # second load must come from the cache: generating again would fail
    def no_generation(args):
        raise AssertionError("cache miss")

    monkeypatch.setattr(data_mod, "_generate_mnist1d", no_generation)
    b = load_dataset("mnist1d", root=tmp_path, train_size=123, test_size=45, seed=3)
    assert _same(a, b)
    monkeypatch.undo()

    # regenerated without cache: bit-identical to the cached arrays
    c = load_dataset("mnist1d", root=tmp_path / "other", train_size=123, test_size=45, seed=3, cache=False)
    assert _same(a, c)
    assert not (tmp_path / "other").exists()
    # another seed: other data
    d = load_dataset("mnist1d", root=tmp_path, train_size=123, test_size=45, seed=4)
    assert not torch.equal(a.x_train, d.x_train)


def test_mnist1d_matches_the_package_generator(tmp_path):
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = 300, 0.8, 42
    state = np.random.get_state()
    ref = make_dataset(args)  # seeds numpy's global RNG
    np.random.set_state(state)
    ds = load_dataset("mnist1d", root=tmp_path, train_size=240, test_size=60, seed=42, cache=False)
    assert torch.equal(ds.x_train, torch.from_numpy(ref["x"].astype(np.float32)))
    assert torch.equal(ds.y_train, torch.from_numpy(ref["y"]))
    assert torch.equal(ds.x_test, torch.from_numpy(ref["x_test"].astype(np.float32)))
    assert torch.equal(ds.y_test, torch.from_numpy(ref["y_test"]))


def test_mnist1d_env_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BYZANTIUM_CACHE", str(tmp_path / "env"))
    assert data_mod.default_cache_dir() == tmp_path / "env"
    load_dataset("mnist1d", train_size=20, test_size=10)
    assert len(list((tmp_path / "env").glob("mnist1d-*.npz"))) == 1


def test_mnist1d_bad_arguments(tmp_path):
    with pytest.raises(DataError, match="seed"):
        load_dataset("mnist1d", root=tmp_path, train_size=20, test_size=10, num_samples=5)
    with pytest.raises(DataError, match="unknown generator argument"):
        load_dataset("mnist1d", root=tmp_path, train_size=20, test_size=10, cache=False, bogus=1)
    with pytest.raises(DataError, match="train_size"):
        load_dataset("mnist1d", root=tmp_path, train_size=0)
    with pytest.raises(DataError, match="name must be one of"):
        load_dataset("mnist", root=tmp_path)


# ------------------------------------------------------------------------------------ digits


def test_digits_split_and_normalisation():
    a = load_dataset("digits")
    assert a.x_train.shape == (1438, 1, 8, 8) and a.x_test.shape == (359, 1, 8, 8)
    assert a.x_train.dtype == torch.float32 and a.y_test.dtype == torch.int64
    assert abs(float(a.x_train.mean())) < 1e-5 and abs(float(a.x_train.std()) - 1) < 1e-3
    b = load_dataset("digits")
    assert _same(a, b)
    s1 = load_dataset("digits", train_size=100, seed=1)
    s2 = load_dataset("digits", train_size=100, seed=2)
    assert s1.x_train.shape[0] == 100 and not torch.equal(s1.y_train, s2.y_train)
    assert torch.equal(s1.y_test, a.y_test)  # the test set does not depend on the seed
    with pytest.raises(DataError, match="train_size must be <= 1438"):
        load_dataset("digits", train_size=5000)
    with pytest.raises(DataError, match=r"unknown keyword\(s\) \['dim'\]; allowed: \['test_fraction'\]"):
        load_dataset("digits", dim=3)


# --------------------------------------------------------------------------------- synthetic


def test_linear_optimum_is_least_squares():
    ds = load_dataset("linear", train_size=300, test_size=50, dim=5, seed=1)
    assert ds.task == "regression" and ds.num_classes == 0 and ds.num_outputs == 1
    assert ds.y_train.dtype == torch.float32 and ds.optimum.shape == (6,)
    a = np.hstack([ds.x_train.double().numpy(), np.ones((300, 1))])
    theta, *_ = np.linalg.lstsq(a, ds.y_train.double().numpy(), rcond=None)
    np.testing.assert_allclose(ds.info["optimum_float64"], theta, rtol=1e-9, atol=1e-10)
    assert _same(ds, load_dataset("linear", train_size=300, test_size=50, dim=5, seed=1))


def test_logistic_labels_and_optimum_metadata():
    ds = load_dataset("logistic", train_size=200, test_size=50, dim=4, num_classes=3, seed=2)
    assert ds.num_classes == 3 and ds.optimum.shape == (3 * 4 + 3,) and ds.l2 == 0.01
    assert set(ds.y_train.tolist()) == {0, 1, 2}
    assert ds.info["optimum_grad_norm"] < 1e-7
    with pytest.raises(DataError, match="l2 must be > 0"):
        load_dataset("logistic", l2=0.0)


# ---------------------------------------------------------------------------------- CIFAR-10


def _write_cifar(folder, per_batch=20, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d = {
            b"batch_label": name.encode(),
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"labels": rng.integers(0, 10, per_batch).tolist(),
            b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)],
        }
        with open(folder / name, "wb") as fh:
            pickle.dump(d, fh)
        out[name] = d
    return out


def test_cifar10_from_local_pickles(tmp_path):
    raw = _write_cifar(tmp_path / "cifar-10-batches-py")
    ds = load_dataset("cifar10", root=tmp_path)  # finds the sub-folder
    assert ds.x_train.shape == (100, 3, 32, 32) and ds.x_test.shape == (20, 3, 32, 32)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.input_shape == (3, 32, 32) and ds.num_classes == 10
    pixels = np.concatenate([raw[f"data_batch_{i}"][b"data"] for i in range(1, 6)]).astype(np.float64) / 255
    pixels = pixels.reshape(100, 3, 32, 32)
    mean, std = pixels.mean(axis=(0, 2, 3)), pixels.std(axis=(0, 2, 3))
    # image 25 = data_batch_2 row 5; channel-major layout c*1024 + i*32 + j
    v = raw["data_batch_2"][b"data"][5, 2 * 1024 + 7 * 32 + 11] / 255
    assert ds.x_train[25, 2, 7, 11].item() == pytest.approx((v - mean[2]) / std[2], abs=1e-5)
    assert ds.y_train[25].item() == raw["data_batch_2"][b"labels"][5]
    assert ds.y_test.tolist() == raw["test_batch"][b"labels"]
    per_channel = ds.x_train.double().mean(dim=(0, 2, 3))
    assert torch.allclose(per_channel, torch.zeros(3, dtype=torch.float64), atol=1e-5)
    sub = load_dataset("cifar10", root=tmp_path / "cifar-10-batches-py", train_size=30, seed=1)
    assert sub.x_train.shape == (30, 3, 32, 32)


def test_cifar10_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_dataset("cifar10", root=tmp_path / "nowhere")
    assert "nowhere" in str(e.value) and "data_batch_1" in str(e.value) and "test_batch" in str(e.value)
    _write_cifar(tmp_path / "partial")
    (tmp_path / "partial" / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing \['test_batch'\]"):
        load_dataset("cifar10", root=tmp_path / "partial")


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar10_refuses_foreign_globals(tmp_path):
    _write_cifar(tmp_path)
    with open(tmp_path / "data_batch_3", "wb") as fh:
        pickle.dump({b"data": _Evil(), b"labels": []}, fh)
    with pytest.raises(pickle.UnpicklingError, match="builtins.print"):
        load_dataset("cifar10", root=tmp_path)


def test_cifar10_bad_shape(tmp_path):
    _write_cifar(tmp_path)
    with open(tmp_path / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, fh)
    with pytest.raises(DataError, match=r"\(N, 3072\)"):
        load_dataset("cifar10", root=tmp_path)


# -------------------------------------------------------------------------------- file split


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


def test_dirichlet_impossible_partition_is_reported():
    with pytest.raises(DataError, match="raise alpha"):
        FileSampler(_labels(200), num_files=25, batch_size=200, split="dirichlet", alpha=0.001, max_tries=5)


def test_label_skew_closed_forms():
    assert label_skew(torch.tensor([[2, 0], [0, 2]])) == pytest.approx(0.5)
    assert label_skew(torch.tensor([[3, 1], [3, 1]])) == pytest.approx(0.0)
