"""The per-step split of a batch into files (``../DESIGN.md``): each step the server samples a
batch of ``b`` training examples and splits it into ``f`` equal files of ``m = b // f`` examples
(:class:`FileSampler`), either IID or with Dirichlet(alpha) label skew across files."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from ..seeding import generator as stream_generator
from .datasets.dataset import DataError

__all__ = ["FileSampler", "dirichlet_partition", "gather_files", "label_skew"]


def _positive_int(where: str, param: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"{where}: {param} must be a positive int, got {param}={value!r}")
    return value


class FileSampler:
    """Each step: sample ``b`` training indices and split them into ``f`` files of ``m = b // f``.

    ``split="iid"``: a step draws ``f*m`` distinct indices uniformly from the whole training set
    (without replacement within the step); file ``i`` is rows ``[i*m, (i+1)*m)`` of the draw.

    ``split="dirichlet"``: at construction the training set is partitioned once into ``f``
    shards with Dirichlet(alpha) label skew (:func:`dirichlet_partition`). Each step, file ``i``
    draws ``m`` distinct indices from shard ``i``.

    When ``f`` does not divide ``b``, the last ``b - f*m`` examples are not drawn (ByzShield's
    convention: files are the first ``f`` slices of ``floor(b/f)`` rows).

    Randomness: the partition comes from ``numpy.random.default_rng(seed)``; step ``t`` uses the
    ``generator`` passed to :meth:`sample`, or if none, ``seeding.generator(seed, "files", t)``,
    so any step can be recomputed (resume) without stored state.
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
        shards = dirichlet_partition(y_train.cpu().numpy(), num_files, float(alpha), c, m, seed, max_tries)
        self.shards = tuple(torch.from_numpy(s) for s in shards)
        sizes = torch.tensor([len(s) for s in shards])
        padded = torch.zeros(num_files, int(sizes.max()), dtype=torch.int64)
        for i, s in enumerate(self.shards):
            padded[i, : len(s)] = s
        self._padded, self._sizes = padded, sizes

    def sample(self, step: int, generator: torch.Generator | None = None) -> Tensor:
        """Training indices of step ``step``: an int64 tensor ``(num_files, file_size)``."""
        g = stream_generator(self.seed, "files", step) if generator is None else generator
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


def dirichlet_partition(
    y: np.ndarray, f: int, alpha: float, c: int, min_size: int, seed: int, max_tries: int
) -> list[np.ndarray]:
    """``f`` sorted index shards of the labels ``y`` (classes ``0..c-1``) with Dirichlet(alpha)
    label skew, the standard construction (Hsu et al. 2019; Wang et al. 2020).

    For every class, draw ``p ~ Dir(alpha * 1_f)`` and cut the shuffled indices of that class into
    ``f`` consecutive pieces of sizes proportional to ``p``; piece ``i`` goes to shard ``i``.
    Small ``alpha``: each shard holds few classes; large ``alpha``: close to IID. A partition that
    leaves a shard with fewer than ``min_size`` examples is redrawn (up to ``max_tries``), then a
    :class:`DataError` is raised. Randomness from ``numpy.random.default_rng(seed)``.
    """
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
