"""Data sets and the per-step split of a batch into files. Nothing is ever downloaded.

Data sets (:func:`load_dataset`):

* ``"mnist1d"`` (default): MNIST-1D (Greydanus & Steinbach), generated locally with the
  ``mnist1d`` package and cached as ``.npz`` keyed by the generator arguments.
* ``"digits"``: scikit-learn's bundled 8x8 digits (1797 images), a fixed train/test split.
* ``"linear"`` / ``"logistic"``: synthetic regression / classification whose optimum for the
  ``"logreg"`` model is known (closed form / scipy), for exactness tests.
* ``"cifar10"``: CIFAR-10 from a local folder in the official *python* format.

The step's data flow (``../DESIGN.md``): each step the server samples a batch of ``b`` training
examples and splits it into ``f`` equal files of ``m = b // f`` examples (:class:`FileSampler`),
either IID or with Dirichlet(alpha) label skew across files.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import pickle
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DataError",
    "Dataset",
    "DATASETS",
    "load_dataset",
    "load_run_dataset",
    "default_cache_dir",
    "FileSampler",
    "gather_files",
    "label_skew",
]

DATASETS = ("mnist1d", "digits", "linear", "logistic", "cifar10")


class DataError(ValueError):
    """Bad argument to a data-set loader or sampler."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Training and test tensors of one data set.

    Features are float32 of shape ``(N, *input_shape)``. Labels are int64 ``(N,)`` for
    classification and float32 ``(N,)`` for regression (``task == "regression"``, where
    ``num_classes == 0``).

    ``optimum`` (synthetic data only) is the flat parameter vector, in
    ``parameters_to_vector`` order, of ``build_model("logreg", dataset)`` that minimises
    ``mean training loss + (l2 / 2) * ||theta||^2`` over *all* parameters (weights and bias); the
    same objective that SGD with ``weight_decay=l2`` optimises with ``loss_fn(dataset)``.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    input_shape: tuple[int, ...]
    task: Literal["classification", "regression"] = "classification"
    optimum: Tensor | None = None
    l2: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_outputs(self) -> int:
        """Width of a model's output layer: the number of classes, or 1 for regression."""
        return self.num_classes if self.task == "classification" else 1

    @property
    def num_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.x_test.shape[0])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={tuple(self.x_train.shape)}, "
            f"test={tuple(self.x_test.shape)}, num_classes={self.num_classes}, task={self.task!r})"
        )


def default_cache_dir() -> Path:
    """``$BYZANTIUM_CACHE`` if set, else ``~/.cache/byzantium``."""
    env = os.environ.get("BYZANTIUM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "byzantium"


def load_run_dataset(cfg: Any) -> Dataset:
    """The data set of a run configuration (``cfg.data`` and ``cfg.seed``), as every runtime and
    rank loads it: the same config gives the same tensors on every machine."""
    d = cfg.data
    return load_dataset(d.name, root=d.root, train_size=d.train_size, seed=cfg.seed, **d.params)


def load_dataset(
    name: str = "mnist1d",
    *,
    root: str | os.PathLike | None = None,
    train_size: int | None = None,
    seed: int = 0,
    **kw: Any,
) -> Dataset:
    """Load (or generate) a data set by name; see the module docstring for the names.

    ``root``: the cache folder for generated data (``mnist1d``; default
    :func:`default_cache_dir`), or the folder holding the CIFAR-10 batches (``cifar10``; default
    ``<cache dir>/cifar-10-batches-py``). ``train_size`` keeps that many training examples (for
    ``mnist1d``, ``linear`` and ``logistic`` it is the number generated). ``seed`` drives every
    random choice; the same arguments give the same tensors bit for bit.

    Extra keywords per data set:
    ``mnist1d``: ``test_size`` (1000), ``cache`` (True), any field of
    ``mnist1d.data.get_dataset_args()`` (e.g. ``iid_noise_scale``);
    ``digits``: ``test_fraction`` (0.2);
    ``linear``: ``test_size`` (200), ``dim`` (20), ``noise`` (0.1), ``l2`` (0.0);
    ``logistic``: ``test_size`` (500), ``dim`` (20), ``num_classes`` (2), ``l2`` (0.01),
    ``temperature`` (1.0);
    ``cifar10``: none.
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise DataError(f"load_dataset: name must be one of {DATASETS}, got name={name!r}")
    if train_size is not None and (not isinstance(train_size, int) or train_size < 1):
        raise DataError(f"load_dataset: train_size must be a positive int or None, got {train_size!r}")
    if not isinstance(seed, int) or seed < 0:
        raise DataError(f"load_dataset: seed must be a non-negative int, got seed={seed!r}")
    loader = {
        "mnist1d": _load_mnist1d,
        "digits": _load_digits,
        "linear": _load_linear,
        "logistic": _load_logistic,
        "cifar10": _load_cifar10,
    }[name]
    if name != "mnist1d":  # mnist1d forwards extra keywords to its generator, which checks them
        params = inspect.signature(loader).parameters
        allowed = sorted(set(params) - {"root", "train_size", "seed"})
        extra = sorted(set(kw) - set(allowed))
        if extra:
            raise DataError(f"load_dataset({name!r}): unknown keyword(s) {extra}; allowed: {allowed}")
    return loader(root=root, train_size=train_size, seed=seed, **kw)


def _positive_int(where: str, param: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"{where}: {param} must be a positive int, got {param}={value!r}")
    return value


# --------------------------------------------------------------------------------------- MNIST-1D


def _load_mnist1d(
    *,
    root: str | os.PathLike | None,
    train_size: int | None,
    seed: int,
    test_size: int = 1000,
    cache: bool = True,
    **overrides: Any,
) -> Dataset:
    """MNIST-1D: 10 classes, signals of length 40 (Greydanus & Steinbach, 2020/2024).

    Generated with ``mnist1d.data.make_dataset`` (never its download path). The generator draws
    ``10 * ceil((train + test) / 10)`` samples (it makes the same number per class), shuffles them
    and splits: the first ``train_size`` are the training set, the next ``test_size`` the test set.
    ``make_dataset`` seeds numpy's *global* RNG; we save and restore that state around the call.
    Features are standardised by the package itself (global mean 0, std 1). With ``seed=42`` and
    the default sizes (4000 / 1000) the arrays equal the package's reference data set
    (``make_dataset(get_dataset_args())``, cast to float32); the default ``seed=0`` gives a fresh
    draw of the same distribution.
    """
    train_size = 4000 if train_size is None else train_size
    test_size = _positive_int("load_dataset('mnist1d')", "test_size", test_size)
    per_class = math.ceil((train_size + test_size) / 10)
    num_samples = 10 * per_class
    args: dict[str, Any] = dict(overrides)
    for bad in ("num_samples", "train_split", "seed", "url"):
        if bad in args:
            raise DataError(
                f"load_dataset('mnist1d'): set {bad!r} through train_size/test_size/seed, not as a keyword"
            )
    # split_ix = int(num_samples * train_split) must equal train_size exactly: aim mid-interval.
    args.update(num_samples=num_samples, train_split=(train_size + 0.5) / num_samples, seed=seed)
    from importlib.metadata import version

    key_src = json.dumps({"mnist1d": version("mnist1d"), **args}, sort_keys=True, default=str)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
    cache_dir = Path(root).expanduser() if root is not None else default_cache_dir()
    path = cache_dir / f"mnist1d-{key}.npz"

    arrays = None
    if cache and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("x", "y", "x_test", "y_test")}
    if arrays is None:
        arrays = _generate_mnist1d(args)
        if cache:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, **arrays)
            os.replace(tmp, path)  # atomic: concurrent runs never see a partial file
    x, y = arrays["x"][:train_size], arrays["y"][:train_size]
    xt, yt = arrays["x_test"][:test_size], arrays["y_test"][:test_size]
    return Dataset(
        name="mnist1d",
        x_train=torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        y_train=torch.from_numpy(y.astype(np.int64)),
        x_test=torch.from_numpy(np.ascontiguousarray(xt, dtype=np.float32)),
        y_test=torch.from_numpy(yt.astype(np.int64)),
        num_classes=10,
        input_shape=(int(x.shape[1]),),
        info={"generator_args": args, "cache_file": str(path) if cache else None},
    )


def _generate_mnist1d(args: dict[str, Any]) -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    full = get_dataset_args(as_dict=True)
    unknown = sorted(set(args) - set(full))
    if unknown:
        raise DataError(
            f"load_dataset('mnist1d'): unknown generator argument(s) {unknown}; allowed: {sorted(full)}"
        )
    full.update(args)

    class _Args:  # mnist1d reads attributes
        def __init__(self, d: dict[str, Any]) -> None:
            self.__dict__.update(d)

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(_Args(full))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {
        "x": np.asarray(d["x"], dtype=np.float32),
        "y": np.asarray(d["y"], dtype=np.int64),
        "x_test": np.asarray(d["x_test"], dtype=np.float32),
        "y_test": np.asarray(d["y_test"], dtype=np.int64),
    }


# ----------------------------------------------------------------------------------------- digits


def _load_digits(
    *, root: Any, train_size: int | None, seed: int, test_fraction: float = 0.2
) -> Dataset:
    """scikit-learn's bundled digits: 1797 8x8 images, 10 classes, pixel values 0..16.

    The train/test split is fixed (a permutation from ``numpy.random.default_rng(0)``, the last
    ``round(test_fraction * 1797)`` as test), so every seed evaluates on the same test set; ``seed``
    only chooses the ``train_size`` subset. Normalised with the training set's mean and std.
    """
    from sklearn.datasets import load_digits

    if not (isinstance(test_fraction, (int, float)) and 0 < test_fraction < 1):
        raise DataError(f"load_dataset('digits'): test_fraction must be in (0, 1), got {test_fraction!r}")
    bunch = load_digits()
    x = np.asarray(bunch.images, dtype=np.float32)[:, None, :, :]  # (N, 1, 8, 8)
    y = np.asarray(bunch.target, dtype=np.int64)
    perm = np.random.default_rng(0).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    tr, te = perm[: len(y) - n_test], perm[len(y) - n_test :]
    tr = _subset(tr, train_size, seed, "digits")
    x_tr, x_te = _normalise_channels(x[tr], x[te])
    return Dataset(
        name="digits",
        x_train=x_tr,
        y_train=torch.from_numpy(y[tr]),
        x_test=x_te,
        y_test=torch.from_numpy(y[te]),
        num_classes=10,
        input_shape=(1, 8, 8),
    )


def _subset(idx: np.ndarray, train_size: int | None, seed: int, name: str) -> np.ndarray:
    if train_size is None:
        return idx
    if train_size > len(idx):
        raise DataError(
            f"load_dataset({name!r}): train_size must be <= {len(idx)} (the training set), got {train_size}"
        )
    pick = np.random.default_rng(seed).permutation(len(idx))[:train_size]
    return idx[np.sort(pick)]


def _normalise_channels(x_tr: np.ndarray, x_te: np.ndarray) -> tuple[Tensor, Tensor]:
    """Per-channel standardisation of ``(N, C, H, W)`` arrays with training-set statistics."""
    mean = x_tr.mean(axis=(0, 2, 3), dtype=np.float64)
    std = x_tr.std(axis=(0, 2, 3), dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    shape = (1, -1, 1, 1)
    f = lambda a: torch.from_numpy(((a - mean.reshape(shape)) / std.reshape(shape)).astype(np.float32))
    return f(x_tr), f(x_te)


# ------------------------------------------------------------------------------------- synthetic


def _load_linear(
    *,
    root: Any,
    train_size: int | None,
    seed: int,
    test_size: int = 200,
    dim: int = 20,
    noise: float = 0.1,
    l2: float = 0.0,
) -> Dataset:
    r"""Linear regression ``y = X w* + b* + noise`` with its exact least-squares optimum.

    ``X ~ N(0, I_dim)``, ``w* ~ N(0, I)``, ``b* ~ N(0, 1)``, noise ``N(0, noise^2)``; all drawn from
    ``numpy.random.default_rng(seed)`` in float64 and stored as float32. With ``A = [X, 1]`` (the
    float32 training data) and the MSE loss :math:`\frac1n\|A\theta - y\|^2`, the optimum of
    :math:`\frac1n\|A\theta-y\|^2 + \frac{l_2}{2}\|\theta\|^2` solves
    :math:`(\frac2n A^\top A + l_2 I)\theta = \frac2n A^\top y`; ``optimum = theta`` in the order
    ``[weight (1, dim), bias (1,)]`` of ``nn.Linear(dim, 1)``.
    """
    n = 1000 if train_size is None else train_size
    test_size = _positive_int("load_dataset('linear')", "test_size", test_size)
    dim = _positive_int("load_dataset('linear')", "dim", dim)
    if not noise >= 0:
        raise DataError(f"load_dataset('linear'): noise must be >= 0, got noise={noise!r}")
    if not l2 >= 0:
        raise DataError(f"load_dataset('linear'): l2 must be >= 0, got l2={l2!r}")
    rng = np.random.default_rng(seed)
    w, b = rng.standard_normal(dim), rng.standard_normal()
    x = rng.standard_normal((n + test_size, dim)).astype(np.float32)
    y = (x.astype(np.float64) @ w + b + noise * rng.standard_normal(n + test_size)).astype(np.float32)
    a = np.hstack([x[:n], np.ones((n, 1), np.float32)]).astype(np.float64)
    lhs = 2.0 / n * a.T @ a + l2 * np.eye(dim + 1)
    theta = np.linalg.solve(lhs, 2.0 / n * a.T @ y[:n].astype(np.float64))
    return Dataset(
        name="linear",
        x_train=torch.from_numpy(x[:n]),
        y_train=torch.from_numpy(y[:n]),
        x_test=torch.from_numpy(x[n:]),
        y_test=torch.from_numpy(y[n:]),
        num_classes=0,
        input_shape=(dim,),
        task="regression",
        optimum=torch.from_numpy(theta.astype(np.float32)),
        l2=float(l2),
        info={"w_true": w, "b_true": b, "optimum_float64": theta},
    )


def _load_logistic(
    *,
    root: Any,
    train_size: int | None,
    seed: int,
    test_size: int = 500,
    dim: int = 20,
    num_classes: int = 2,
    l2: float = 0.01,
    temperature: float = 1.0,
) -> Dataset:
    r"""Softmax classification with the optimum of the L2-regularised logistic loss.

    ``X ~ N(0, I_dim)``; labels drawn from ``softmax((X W* + b*) / temperature)`` with
    ``W*`` entries ``N(0, 9 / dim)`` and ``b* ~ N(0, 1)`` (logits of std about 3), so the classes are
    separable-ish but overlap; ``l2 > 0`` makes the optimum unique (softmax weights are otherwise
    only defined up to a shift). The optimum of
    :math:`\frac1n\sum_i \mathrm{CE}(W x_i + b, y_i) + \frac{l_2}{2}(\|W\|^2 + \|b\|^2)` is found
    by scipy's L-BFGS in float64 (gradient norm < 1e-9) and returned in the order
    ``[weight (C, dim), bias (C,)]`` of ``nn.Linear(dim, C)``.
    """
    from scipy.optimize import minimize
    from scipy.special import log_softmax, softmax

    n = 1000 if train_size is None else train_size
    test_size = _positive_int("load_dataset('logistic')", "test_size", test_size)
    dim = _positive_int("load_dataset('logistic')", "dim", dim)
    c = _positive_int("load_dataset('logistic')", "num_classes", num_classes)
    if c < 2:
        raise DataError(f"load_dataset('logistic'): num_classes must be >= 2, got num_classes={c}")
    if not l2 > 0:
        raise DataError(f"load_dataset('logistic'): l2 must be > 0 (unique optimum), got l2={l2!r}")
    if not temperature > 0:
        raise DataError(f"load_dataset('logistic'): temperature must be > 0, got {temperature!r}")
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((c, dim)) * (3.0 / math.sqrt(dim))
    b = rng.standard_normal(c)
    x = rng.standard_normal((n + test_size, dim)).astype(np.float32)
    p = softmax((x.astype(np.float64) @ w.T + b) / temperature, axis=1)
    u = rng.random((n + test_size, 1))
    y = np.minimum((p.cumsum(axis=1) < u).sum(axis=1), c - 1).astype(np.int64)

    a = x[:n].astype(np.float64)
    onehot = np.eye(c)[y[:n]]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        wt, bt = theta[: c * dim].reshape(c, dim), theta[c * dim :]
        logits = a @ wt.T + bt
        lsm = log_softmax(logits, axis=1)
        loss = -(onehot * lsm).sum() / n + 0.5 * l2 * theta @ theta
        r = (np.exp(lsm) - onehot) / n  # d loss / d logits
        grad = np.concatenate([(r.T @ a).ravel(), r.sum(axis=0)]) + l2 * theta
        return loss, grad

    res = minimize(
        objective, np.zeros(c * dim + c), jac=True, method="L-BFGS-B",
        options={"gtol": 1e-12, "ftol": 0.0, "maxiter": 10_000},
    )
    gnorm = float(np.linalg.norm(objective(res.x)[1]))
    if gnorm > 1e-7:  # pragma: no cover - L-BFGS on a strongly convex smooth problem
        raise RuntimeError(f"load_dataset('logistic'): optimiser did not converge (|grad|={gnorm:.2e})")
    return Dataset(
        name="logistic",
        x_train=torch.from_numpy(x[:n]),
        y_train=torch.from_numpy(y[:n]),
        x_test=torch.from_numpy(x[n:]),
        y_test=torch.from_numpy(y[n:]),
        num_classes=c,
        input_shape=(dim,),
        optimum=torch.from_numpy(res.x.astype(np.float32)),
        l2=float(l2),
        info={"w_true": w, "b_true": b, "optimum_float64": res.x, "optimum_grad_norm": gnorm},
    )


# --------------------------------------------------------------------------------------- CIFAR-10

_CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays and plain containers.

    The CIFAR-10 python batches are pickles (the data set's official format). Unpickling can run
    arbitrary code, so we refuse every global except numpy's array reconstruction: a tampered
    file fails with ``pickle.UnpicklingError`` instead of executing anything.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"CIFAR-10 batch: refusing to load global {module}.{name}")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as fh:
        d = _ArrayUnpickler(fh, encoding="bytes").load()
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise DataError(f"load_dataset('cifar10'): {path} is not a CIFAR-10 batch (needs keys b'data', b'labels')")
    data = np.asarray(d[b"data"])
    labels = np.asarray(d[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(
            f"load_dataset('cifar10'): {path}: expected b'data' uint8 (N, 3072) and N labels, got "
            f"data {data.dtype} {data.shape} and {len(labels)} labels"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"load_dataset('cifar10'): {path}: labels must be in 0..9")
    return data.reshape(-1, 3, 32, 32), labels


def _load_cifar10(*, root: str | os.PathLike | None, train_size: int | None, seed: int) -> Dataset:
    """CIFAR-10 from a local folder in the official python format (never downloaded).

    ``root`` must hold ``data_batch_1`` .. ``data_batch_5`` and ``test_batch`` (or a
    ``cifar-10-batches-py`` sub-folder holding them): pickled dicts with ``b"data"`` (N x 3072
    uint8, channel-major 32x32) and ``b"labels"``. They are read with a restricted unpickler that
    only rebuilds numpy arrays. Pixels are scaled to [0, 1] and standardised per channel with the
    training statistics; ``train_size`` keeps a seeded random subset (sorted) of the 50,000.
    """
    folder = Path(root).expanduser() if root is not None else default_cache_dir() / "cifar-10-batches-py"
    if not (folder / "test_batch").is_file() and (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    missing = [f for f in _CIFAR_FILES if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"load_dataset('cifar10'): folder {str(folder)!r} must hold the CIFAR-10 python batches "
            f"{list(_CIFAR_FILES)}; missing {missing}. byzantium never downloads data: get "
            "cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, extract it "
            "and pass root=<the cifar-10-batches-py folder>."
        )
    parts = [_read_cifar_batch(folder / f) for f in _CIFAR_FILES[:5]]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    xt, yt = _read_cifar_batch(folder / "test_batch")
    idx = _subset(np.arange(len(y)), train_size, seed, "cifar10")
    x_tr, x_te = _normalise_channels(x[idx].astype(np.float32) / 255.0, xt.astype(np.float32) / 255.0)
    return Dataset(
        name="cifar10",
        x_train=x_tr,
        y_train=torch.from_numpy(y[idx]),
        x_test=x_te,
        y_test=torch.from_numpy(yt),
        num_classes=10,
        input_shape=(3, 32, 32),
        info={"root": str(folder)},
    )


# ----------------------------------------------------------------------------------- file split


def _step_generator(seed: int, step: int) -> torch.Generator:
    """A generator whose state is a fixed function of ``(seed, step)``: resumable, no hidden state."""
    mixed = hashlib.sha256(f"byzantium.files:{seed}:{step}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(mixed[:8], "little") & ((1 << 63) - 1))


class FileSampler:
    """Each step: sample ``b`` training indices and split them into ``f`` files of ``m = b // f``.

    ``split="iid"``: a step draws ``f*m`` distinct indices uniformly from the whole training set
    (without replacement within the step); file ``i`` is rows ``[i*m, (i+1)*m)`` of the draw.

    ``split="dirichlet"``: at construction the training set is partitioned once into ``f``
    shards with Dirichlet(alpha) label skew, the standard construction (Hsu et al. 2019;
    Wang et al. 2020): for every class ``c``, draw ``p_c ~ Dir(alpha * 1_f)`` and cut the shuffled
    indices of class ``c`` into ``f`` consecutive pieces of sizes proportional to ``p_c``; piece
    ``i`` goes to shard ``i``. Small ``alpha``: each shard holds few classes; large ``alpha``: close
    to IID. A partition that leaves a shard with fewer than ``m`` examples is redrawn (up to
    ``max_tries``), then a :class:`DataError` is raised. Each step, file ``i`` draws ``m`` distinct
    indices from shard ``i``.

    When ``f`` does not divide ``b``, the last ``b - f*m`` examples are not drawn (ByzShield's
    convention: files are the first ``f`` slices of ``floor(b/f)`` rows).

    Randomness: the partition comes from ``numpy.random.default_rng(seed)``; step ``t`` uses the
    ``generator`` passed to :meth:`sample`, or if none, a generator seeded from ``(seed, t)``, so
    any step can be recomputed (resume) without stored state.
    """

    def __init__(
        self,
        y_train: Tensor,
        *,
        num_files: int,
        batch_size: int,
        split: Literal["iid", "dirichlet"] = "iid",
        alpha: float | None = None,
        seed: int = 0,
        num_classes: int | None = None,
        max_tries: int = 1000,
    ) -> None:
        where = "FileSampler"
        num_files = _positive_int(where, "num_files", num_files)
        batch_size = _positive_int(where, "batch_size", batch_size)
        if y_train.ndim != 1:
            raise DataError(f"{where}: y_train must be 1-D, got shape {tuple(y_train.shape)}")
        n = int(y_train.shape[0])
        m = batch_size // num_files
        if m < 1:
            raise DataError(
                f"{where}: batch_size // num_files must be >= 1 (each file needs an example), got "
                f"batch_size={batch_size}, num_files={num_files}"
            )
        if num_files * m > n:
            raise DataError(
                f"{where}: a step needs num_files * (batch_size // num_files) = {num_files * m} distinct "
                f"examples but the training set has {n}"
            )
        if split not in ("iid", "dirichlet"):
            raise DataError(f"{where}: split must be 'iid' or 'dirichlet', got split={split!r}")
        if split == "iid" and alpha is not None:
            raise DataError(f"{where}: alpha is only used with split='dirichlet', got alpha={alpha!r}")
        self.num_files, self.batch_size, self.file_size = num_files, batch_size, m
        self.split, self.alpha, self.seed, self.num_train = split, alpha, int(seed), n
        self.shards: tuple[Tensor, ...] | None = None
        self._padded: Tensor | None = None
        self._sizes: Tensor | None = None
        self._labels = y_train
        if split == "iid":
            return
        if alpha is None or not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
            raise DataError(f"{where}: split='dirichlet' needs a finite alpha > 0, got alpha={alpha!r}")
        if y_train.dtype != torch.int64:
            raise DataError(f"{where}: split='dirichlet' needs int64 class labels, got {y_train.dtype}")
        c = int(y_train.max()) + 1 if num_classes is None else num_classes
        self.num_classes = c
        shards = _dirichlet_partition(y_train.cpu().numpy(), num_files, float(alpha), c, m, seed, max_tries)
        self.shards = tuple(torch.from_numpy(s) for s in shards)
        sizes = torch.tensor([len(s) for s in shards])
        padded = torch.zeros(num_files, int(sizes.max()), dtype=torch.int64)
        for i, s in enumerate(self.shards):
            padded[i, : len(s)] = s
        self._padded, self._sizes = padded, sizes

    def sample(self, step: int, generator: torch.Generator | None = None) -> Tensor:
        """Training indices of step ``step``: an int64 tensor ``(num_files, file_size)``."""
        g = _step_generator(self.seed, step) if generator is None else generator
        f, m = self.num_files, self.file_size
        if self._padded is None:
            return torch.randperm(self.num_train, generator=g)[: f * m].view(f, m)
        # m distinct positions per shard in one vectorised draw: smallest m random keys per row,
        # padding positions get key 2 (> any uniform draw) so they are never picked.
        keys = torch.rand(self._padded.shape, generator=g)
        cols = torch.arange(self._padded.shape[1])
        keys[cols[None, :] >= self._sizes[:, None]] = 2.0
        pos = keys.topk(m, dim=1, largest=False, sorted=True).indices
        return self._padded.gather(1, pos)

    def shard_label_counts(self) -> Tensor:
        """``(num_files, num_classes)`` label histogram of each Dirichlet shard."""
        if self.shards is None:
            raise DataError("FileSampler.shard_label_counts: only defined for split='dirichlet'")
        return torch.stack(
            [torch.bincount(self._labels[s], minlength=self.num_classes) for s in self.shards]
        )

    def __repr__(self) -> str:
        extra = f", alpha={self.alpha}" if self.split == "dirichlet" else ""
        return (
            f"FileSampler(num_files={self.num_files}, batch_size={self.batch_size}, "
            f"file_size={self.file_size}, split={self.split!r}{extra}, seed={self.seed})"
        )


def _dirichlet_partition(
    y: np.ndarray, f: int, alpha: float, c: int, min_size: int, seed: int, max_tries: int
) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(y == k) for k in range(c)]
    smallest = 0
    for _ in range(max_tries):
        pieces: list[list[np.ndarray]] = [[] for _ in range(f)]
        for idx in by_class:
            idx = rng.permutation(idx)
            cuts = np.floor(np.cumsum(rng.dirichlet(np.full(f, alpha)))[:-1] * len(idx)).astype(int)
            for i, part in enumerate(np.split(idx, cuts)):
                pieces[i].append(part)
        shards = [np.sort(np.concatenate(p)) for p in pieces]
        smallest = min(len(s) for s in shards)
        if smallest >= min_size:
            return shards
    raise DataError(
        f"FileSampler: Dirichlet(alpha={alpha}) partition into num_files={f} shards left a shard with "
        f"{smallest} < file_size={min_size} examples in all {max_tries} draws; raise alpha or lower "
        f"num_files or batch_size"
    )


def gather_files(x: Tensor, y: Tensor, indices: Tensor) -> tuple[Tensor, Tensor]:
    """``(x[indices], y[indices])``: files ``(num_files, m, *input_shape)`` and ``(num_files, m)``."""
    return x[indices], y[indices]


def label_skew(counts: Tensor) -> float:
    """Mean total-variation distance between each row's label distribution and the pooled one.

    ``counts`` is ``(num_files, num_classes)`` (e.g. :meth:`FileSampler.shard_label_counts`).
    0 for identical label mixes; close to ``1 - 1/C`` when each file holds a single class.
    """
    counts = counts.to(torch.float64)
    p = counts / counts.sum(dim=1, keepdim=True).clamp_min(1)
    q = counts.sum(dim=0) / counts.sum()
    return float(0.5 * (p - q).abs().sum(dim=1).mean())
