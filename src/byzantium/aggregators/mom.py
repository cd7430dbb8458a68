"""Median of means: average groups of inputs, then take a robust median of the group means."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._select import (
    block_order_stats,
    coordinate_median,
    median_block,
    median_ranks,
    scratch,
    select_map,
    uses_numpy_path,
)
from .preagg import _check_generator, _permutation, group_indicator, group_means
from .registry import (
    N_GT_2F,
    REGISTRY,
    AggregatorError,
    ConstraintError,
    _all_finite,
    drop_nonfinite_rows,
    rule,
)

__all__ = ["median_of_means", "mom_groups"]

_INNER = ("median", "geometric_median")


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConstraintError(f"median_of_means: {name} must be an integer >= 1, got {name}={value!r}")
    return int(value)


def mom_groups(n: int, f: int, groups: int | None = None, group_size: int | None = None) -> list[int]:
    """Sizes of the consecutive groups median-of-means forms from ``n`` inputs.

    ``groups=g``: ``g`` groups of sizes ``floor(n/g)`` or ``ceil(n/g)`` (the larger ones first);
    ``group_size=s``: groups of ``s`` with a smaller last group holding ``n mod s``; neither:
    ``2f + 1`` groups, the fewest that tolerate ``f``. Raises :class:`ConstraintError` unless
    the number of groups exceeds ``2f`` (each Byzantine input spoils at most one group, and the
    median needs a majority of clean groups) and is at most ``n``.
    """
    if groups is not None and group_size is not None:
        raise ConstraintError(
            f"median_of_means: give groups or group_size, not both, got groups={groups!r}, "
            f"group_size={group_size!r}"
        )
    if group_size is not None:
        size = _positive_int("group_size", group_size)
        g = -(-n // size)
        sizes = [size] * (n // size) + ([n % size] if n % size else [])
    else:
        g = 2 * f + 1 if groups is None else _positive_int("groups", groups)
        if g > n:
            raise ConstraintError(
                f"median_of_means: requires groups <= n, got groups={g}, n={n}"
                + (" (default groups = 2f+1)" if groups is None else "")
            )
        base, extra = divmod(n, g)
        sizes = [base + 1] * extra + [base] * (g - extra)
    if g <= 2 * f:
        raise ConstraintError(
            f"median_of_means: requires number of groups > 2f (each Byzantine input spoils at most "
            f"one group), got groups={g}, f={f}, n={n}"
        )
    return sizes


def _median_of_means_blocked(grads: Tensor, indicator: Tensor, sizes: list[int]) -> Tensor:
    """CPU path: per column block, the group means (one small 0/1 matrix product, in cache, then
    a division by the group sizes) and their coordinate median (sorting network); the ``(g, d)``
    means are never materialized."""
    g = indicator.shape[0]
    ranks = median_ranks(g)
    counts = torch.tensor(sizes, dtype=grads.dtype).unsqueeze(1)

    def fn(stats: Any, block: np.ndarray, out: np.ndarray, cols: slice) -> None:
        means = scratch(g, block.shape[1], block.dtype, 5)
        sums = torch.from_numpy(means)
        torch.mm(indicator, torch.from_numpy(block), out=sums)
        sums.div_(counts)
        median_block(block_order_stats(means, ranks, slot=6), means, out)

    return select_map(grads, (), fn)[0]


@rule(
    "median_of_means",
    constraint=N_GT_2F,
    summary="means of consecutive (optionally shuffled) groups, then their coordinate or "
    "geometric median; needs groups > 2f",
    reference="Minsker 2015 (geometric median of means); Chen, Su, Xu, Distributed statistical "
    "machine learning in adversarial settings, 2017; ByzShield/DETOX hierarchical aggregation",
)
def median_of_means(
    grads: Tensor,
    *,
    f: int = 0,
    groups: int | None = None,
    group_size: int | None = None,
    inner: str = "median",
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Median of means.

    Split the inputs into consecutive groups (see :func:`mom_groups`: ``groups`` of nearly equal
    size, or groups of ``group_size``, default ``2f + 1`` groups), average each group, and return
    the coordinate-wise median (``inner="median"``) or the geometric median
    (``inner="geometric_median"``, Chen, Su, Xu 2017) of the group means.

    A Byzantine input spoils only the group it falls in, so with at most ``f`` Byzantine inputs at
    most ``f`` group means are bad; **the number of groups must exceed** ``2f`` for the median to
    rest on a majority of clean groups (checked: :class:`ConstraintError` otherwise). With a
    ``generator`` the inputs are randomly permuted before grouping (the shuffle of DETOX and
    ByzShield, which keeps an adversary from choosing its group); without one the given order is
    used, and the result then depends on the row order.
    """
    if inner not in _INNER:
        raise ConstraintError(f"median_of_means: inner must be one of {list(_INNER)}, got inner={inner!r}")
    _check_generator("median_of_means", generator)
    n = grads.shape[0]
    sizes = mom_groups(n, f, groups, group_size)
    perm = _permutation(n, generator, grads.device)
    if inner == "median" and uses_numpy_path(grads):
        out = _median_of_means_blocked(grads, group_indicator(n, sizes, perm, grads.dtype), sizes)
        if _all_finite(out):
            return out
        # a group mean overflowed (values at the float maximum): take the path below
    means = group_means(grads, sizes, perm)
    # a group mean can overflow (Byzantine values near the float maximum): it is one of the <= f
    # spoiled groups, so the non-finite policy applies to the group means with the same f
    means, f_left = drop_nonfinite_rows("median_of_means", means, f)
    if inner == "median":
        return coordinate_median(means)
    entry = REGISTRY.get("geometric_median")
    if entry is None:
        raise AggregatorError(
            "median_of_means: inner='geometric_median' needs the geometric_median rule, which is "
            "not registered"
        )
    return entry.fn(means, f=f_left) if "f" in entry.params else entry.fn(means)
