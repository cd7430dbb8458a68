"""CIFAR-10 from local python batches: layout, normalisation, missing and tampered files."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from byzantium.training.datasets import DataError, load_dataset


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
    with pytest.raises(DataError, match=r"load_dataset\('cifar10'\): unknown field dim; allowed fields: \(none\)"):
        load_dataset("cifar10", root=tmp_path, dim=3)


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
