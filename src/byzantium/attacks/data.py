"""Data-level attacks: the Byzantine slots train honestly on poisoned data.

Label flipping is not a transform of gradients. A data-level attack registers its label transform
(``register(..., labels=flip_labels)``); the engine asks :meth:`Attack.transform_labels` for the
labels a Byzantine slot trains on, computes that slot's gradient on them and passes it as
``ctx.own``; the attack's vector transform is then the identity on ``own``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import AttackContext, AttackError, integer, register

__all__ = ["label_flip", "flip_labels"]


def _check_label_flip(p: dict[str, Any]) -> dict[str, Any]:
    src, tgt = p["source"], p["target"]
    if (src is None) != (tgt is None):
        raise AttackError(
            "label_flip: give both source and target (targeted flip) or neither (y' = C - 1 - y), "
            f"got source={src!r}, target={tgt!r}"
        )
    if src is not None:
        src = integer("label_flip", "source", src, minimum=0)
        tgt = integer("label_flip", "target", tgt, minimum=0)
    return {"source": src, "target": tgt}


def flip_labels(
    y: Tensor, num_classes: int, *, source: int | None = None, target: int | None = None
) -> Tensor:
    """Poisoned labels: ``y' = C − 1 − y`` (default), or ``source → target`` only (targeted).

    ``y`` is an integer tensor of class indices in ``[0, C)``; returns a new tensor.
    """
    C = integer("label_flip", "num_classes", num_classes, minimum=1)
    if not isinstance(y, Tensor) or y.is_floating_point() \
            or y.is_complex() or y.dtype == torch.bool:
        raise AttackError(
            f"label_flip: y must be an integer tensor of class indices, got "
            f"{y.dtype if isinstance(y, Tensor) else type(y).__name__}"
        )
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= C):
        raise AttackError(
            f"label_flip: labels must lie in [0, {C}), got min={int(y.min())}, max={int(y.max())}"
        )
    if source is None:
        return (C - 1) - y
    for nm, v in (("source", source), ("target", target)):
        if not 0 <= int(v) < C:  # type: ignore[arg-type]
            raise AttackError(f"label_flip: {nm} must be in [0, {C}), got {nm}={v}")
    return torch.where(y == source, torch.full_like(y, int(target)), y)  # type: ignore[arg-type]


@register(
    "label_flip",
    knowledge="local",
    shared=False,
    labels=flip_labels,
    check=_check_label_flip,
    reference="label flipping as in Karimireddy, He, Jaggi, Learning from history for Byzantine "
    "robust optimization, ICML 2021 (y' = C - 1 - y); targeted source -> target as FLPoison",
    summary="data-level: train on y' = C - 1 - y (or source -> target); b = own",
)
def label_flip(
    ctx: AttackContext, *, source: int | None = None, target: int | None = None
) -> Tensor:
    """Identity on ``ctx.own``: the engine computed ``own`` on :func:`flip_labels` labels."""
    return ctx.need_own("label_flip")
