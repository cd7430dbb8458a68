"""Attacks with a closed form that needs no statistics: zero, constant, NaN/Inf, gaussian noise,
sign flip, reversed (scaled) gradient, mimic."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import AttackContext, AttackError, choice, integer, real, register, sign

__all__ = ["zero", "constant", "nan", "inf", "gaussian", "sign_flip", "reversed_gradient", "mimic"]


@register("zero", knowledge="none", shared=True, summary="b = 0 (a silent / lazy worker)")
def zero(ctx: AttackContext) -> Tensor:
    """``b = 0``: every slot sends the zero vector."""
    return ctx.honest.new_zeros(ctx.d)


def _check_constant(p: dict[str, Any]) -> dict[str, Any]:
    return {"c": real("constant", "c", p["c"])}


@register(
    "constant",
    knowledge="none",
    shared=True,
    check=_check_constant,
    reference="DETOX (Rajput et al. 2019) and ByzShield (Konstantinidis & Ramamoorthy 2021) code",
    summary="b = c * 1 (DETOX/ByzShield 'constant', c = -100)",
)
def constant(ctx: AttackContext, *, c: float = -100.0) -> Tensor:
    """``b = c·1``. Default ``c = -100`` as in the DETOX and ByzShield code (``CONST_``)."""
    return ctx.honest.new_full((ctx.d,), c)


@register("nan", knowledge="none", shared=True, summary="b = NaN * 1 (tests input validation)")
def nan(ctx: AttackContext) -> Tensor:
    """``b = NaN·1``: every coordinate NaN. Tests that the server rejects malformed vectors."""
    return ctx.honest.new_full((ctx.d,), float("nan"))


def _check_inf(p: dict[str, Any]) -> dict[str, Any]:
    return {"sign": sign("inf", p["sign"])}


@register(
    "inf",
    knowledge="none",
    shared=True,
    check=_check_inf,
    summary="b = +inf * 1 (sign='-' for -inf; tests input validation)",
)
def inf(ctx: AttackContext, *, sign: str = "+") -> Tensor:
    """``b = ±∞·1`` (byzfl's Inf attack is ``+∞``, the default)."""
    return ctx.honest.new_full((ctx.d,), float("inf") if sign == "+" else float("-inf"))


def _check_gaussian(p: dict[str, Any]) -> dict[str, Any]:
    std = real("gaussian", "std", p["std"])
    if std < 0:
        raise AttackError(f"gaussian: std must be >= 0, got std={p['std']!r}")
    return {"mean": real("gaussian", "mean", p["mean"]), "std": std}


@register(
    "gaussian",
    knowledge="none",
    shared=False,
    check=_check_gaussian,
    reference="byzfl Gaussian (N(0, 1)); Blanchard et al. 2017 use Gaussian Byzantine vectors",
    summary="b ~ N(mean, std^2 I), fresh draw per slot from ctx.generator (byzfl: N(0, 1))",
)
def gaussian(ctx: AttackContext, *, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """``b_k ~ N(mean, std²·I)`` independently for every slot ``k``, drawn from ``ctx.generator``.

    Defaults ``N(0, 1)`` as in byzfl (blades uses ``N(0.1, 0.1²)``). The draw is made on the
    generator's device in the gradients' dtype, so a seeded generator gives the same vectors.
    """
    g = ctx.need_generator("gaussian")
    z = torch.randn((ctx.slots, ctx.d), generator=g, dtype=ctx.honest.dtype, device=g.device)
    return z.to(ctx.honest.device) * std + mean


def _check_sign_flip(p: dict[str, Any]) -> dict[str, Any]:
    return {"mode": choice("sign_flip", "mode", p["mode"], ("own", "mean"))}


@register(
    "sign_flip",
    knowledge=lambda p: "local" if p["mode"] == "own" else "omniscient",
    shared=lambda p: p["mode"] == "mean",
    check=_check_sign_flip,
    reference="Damaskinos et al. 2019 / Allen-Zhu et al. 2021 (-g_own); byzfl SignFlipping (-mu)",
    summary="b = -own per slot (mode='own', local), or b = -mean(honest) (mode='mean')",
)
def sign_flip(ctx: AttackContext, *, mode: str = "own") -> Tensor:
    """Sign flip.

    * ``mode="own"`` (default; blades, FLPoison, epfml "BF"): ``b_k = -own_k``, per slot, local
      knowledge.
    * ``mode="mean"`` (byzfl): ``b = -μ`` with ``μ`` the mean of the honest vectors, omniscient.
    """
    if mode == "own":
        return -ctx.need_own("sign_flip")
    return -ctx.need_honest("sign_flip").mean(dim=0)


def _check_reversed(p: dict[str, Any]) -> dict[str, Any]:
    return {"scale": real("reversed", "scale", p["scale"], positive=True)}


@register(
    "reversed",
    knowledge="local",
    shared=False,
    check=_check_reversed,
    reference="DETOX / ByzShield 'rev_grad' (ADVERSARY_ = -100), Garfield 'reverse'",
    summary="b = -scale * own per slot (DETOX/ByzShield rev_grad, scale = 100)",
)
def reversed_gradient(ctx: AttackContext, *, scale: float = 100.0) -> Tensor:
    """``b_k = -scale·own_k``. Default ``scale = 100`` as DETOX/ByzShield ``rev_grad``."""
    return ctx.need_own("reversed") * (-scale)


def _check_mimic(p: dict[str, Any]) -> dict[str, Any]:
    return {"index": integer("mimic", "index", p["index"])}


@register(
    "mimic",
    knowledge="omniscient",
    shared=True,
    check=_check_mimic,
    reference="Karimireddy, He, Jaggi, Byzantine-robust learning on heterogeneous datasets via "
    "bucketing, ICLR 2022",
    summary="b = honest[index] (a copy of one honest vector; index = 0)",
)
def mimic(ctx: AttackContext, *, index: int = 0) -> Tensor:
    """``b = x_{i*}``, a copy of honest vector ``i* = index`` (Karimireddy et al. 2022).

    A fixed index (byzfl, FLPoison), default 0. epfml's heuristic (``i*`` maximising ``⟨x_i, z⟩``
    for a principal direction learnt during a warm-up) needs state across steps and is left out.
    Negative indices count from the end.
    """
    honest = ctx.need_honest("mimic")
    if not -ctx.h <= index < ctx.h:
        raise AttackError(
            f"mimic: index must be in [-h, h) = [{-ctx.h}, {ctx.h}), got index={index}"
        )
    return honest[index]
