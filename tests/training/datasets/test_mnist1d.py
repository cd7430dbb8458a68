"""MNIST-1D: shapes, cache, determinism, agreement with the package's generator, arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import byzantium.training.datasets.mnist1d as mnist1d_mod
from byzantium.training.datasets import DataError, default_cache_dir, load_dataset


def _same(a, b) -> bool:
    return all(
        torch.equal(getattr(a, k), getattr(b, k)) for k in ("x_train", "y_train", "x_test", "y_test")
    )


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

    monkeypatch.setattr(mnist1d_mod, "_generate_mnist1d", no_generation)
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


def test_mnist1d_generator_arguments_pass_through(tmp_path):
    plain = load_dataset("mnist1d", root=tmp_path, train_size=50, test_size=10, cache=False)
    noisy = load_dataset("mnist1d", root=tmp_path, train_size=50, test_size=10, cache=False,
                         iid_noise_scale=0.5)
    assert noisy.info["generator_args"]["iid_noise_scale"] == 0.5
    assert not torch.equal(plain.x_train, noisy.x_train)
    assert torch.equal(plain.y_train, noisy.y_train)  # labels and order do not depend on noise


def test_mnist1d_env_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BYZANTIUM_CACHE", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"
    load_dataset("mnist1d", train_size=20, test_size=10)
    assert len(list((tmp_path / "env").glob("mnist1d-*.npz"))) == 1


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"num_samples": 5}, r"load_dataset\('mnist1d'\): set 'num_samples' through train_size/test_size/seed"),
        ({"seed": 3, "cache": False}, None),  # seed is load_dataset's own argument: accepted
        ({"cache": False, "bogus": 1}, r"unknown generator argument\(s\) \['bogus'\]; allowed: \["),
        ({"test_size": 0}, r"load_dataset\('mnist1d'\): test_size: must be >= 1, got 0"),
        ({"test_size": "10"}, r"test_size: expected an integer, got '10'"),
        ({"cache": "yes"}, r"cache: expected true or false, got 'yes'"),
    ],
)
def test_mnist1d_bad_arguments(tmp_path, kw, match):
    if match is None:
        assert load_dataset("mnist1d", root=tmp_path, train_size=20, test_size=10, **kw).num_train == 20
        return
    kw = {"test_size": 10, **kw}
    with pytest.raises(DataError, match=match):
        load_dataset("mnist1d", root=tmp_path, train_size=20, **kw)
