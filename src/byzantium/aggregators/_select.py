"""Fast coordinate-wise order statistics over a stacked ``(n, d)`` tensor.

``torch.median``/``torch.sort`` along dim 0 sort every column; we only need one or two order
statistics, so on CPU we use numpy's introselect (``np.partition``) on column blocks spread over a
small thread pool (numpy releases the GIL inside ``partition``). Other devices use ``torch.sort``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

_BLOCK = 65536  # columns per task: 25 rows x 64k float32 = 6.5 MB, a few tasks per core


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1)))


def _blocks(d: int) -> list[slice]:
    nblocks = max(1, min(64, -(-d // _BLOCK)))
    edges = np.linspace(0, d, nblocks + 1).astype(int)
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def partition_rows(x: Tensor, kth: int) -> Tensor:
    """Return a copy of ``x`` where, in every column, row ``kth`` holds the ``kth`` smallest value,
    rows above it hold smaller-or-equal values and rows below larger-or-equal ones."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return torch.sort(x, dim=0).values
    a = x.detach().contiguous().numpy()
    out = np.empty_like(a)

    def work(sl: slice) -> None:
        out[:, sl] = np.partition(a[:, sl], kth, axis=0)

    blocks = _blocks(a.shape[1])
    if len(blocks) == 1:
        work(blocks[0])
    else:
        list(_pool().map(work, blocks))
    return torch.from_numpy(out)


def coordinate_median(x: Tensor) -> Tensor:
    """Coordinate-wise median with the midpoint convention (mean of the two middle values when
    ``n`` is even), like ``numpy.median`` and unlike ``torch.median`` (lower middle)."""
    n = x.shape[0]
    hi = n // 2
    p = partition_rows(x, hi)
    upper = p[hi]
    if n % 2:
        return upper.clone()
    lower = p[:hi].amax(dim=0)
    return (lower + upper) / 2
