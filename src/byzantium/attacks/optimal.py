r"""Defense-aware "optimal" ALIE and IPM: search the scale that hurts the server's rule most.

Convention of byzfl (and ByzantineMomentum's ``factor < 0``): with ``μ`` the honest mean and ``f``
Byzantine copies of ``b(τ)``,

.. math:: \tau^* = \arg\max_{\tau > 0} \; \| \mathrm{rule}(x_1, \dots, x_h,
          \underbrace{b(\tau), \dots, b(\tau)}_{f}) - \mu \|_2,

found with :func:`line_maximize` (a budget of ``evals`` rule evaluations), then ``b(τ*)`` is sent.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor

from .base import AttackContext, AttackError, choice, integer, real, register, sign
from .statistical import mean_std

__all__ = ["line_maximize", "distortion", "alie_opt", "ipm_opt"]


def line_maximize(
    objective: Callable[[float], float],
    *,
    start: float = 1.0,
    evals: int = 20,
    expansion: float = 2.0,
    ratio: float = 0.8,
) -> tuple[float, float]:
    """Maximise ``objective`` over ``τ > 0`` with exactly ``min(evals, ...)`` evaluations.

    Returns ``(τ_best, objective(τ_best))``, the best point evaluated, so the result is never worse
    than ``start``. A non-finite objective value counts as ``-inf``.

    1. Evaluate ``τ = start``.
    2. Expansion: ``τ ← expansion·τ_best`` while the objective strictly improves (the first
       failure ends the phase; that evaluation is spent).
    3. Contraction (pattern search around the best point): ``Δ ← ratio·τ_best``; repeat: probe
       ``τ_best − Δ`` (skipped, uncounted, if ``<= 0``) then ``τ_best + Δ``, moving ``τ_best`` to
       any probe that strictly improves, then ``Δ ← ratio·Δ``.

    The whole search stops when ``evals`` evaluations are spent.
    """
    used = 0

    def f(t: float) -> float:
        nonlocal used
        used += 1
        v = float(objective(t))
        return v if math.isfinite(v) else -math.inf

    best, fbest = start, f(start)
    while used < evals:
        cand = best * expansion
        fc = f(cand)
        if fc > fbest:
            best, fbest = cand, fc
        else:
            break
    delta = ratio * best
    while used < evals:
        for cand in (best - delta, best + delta):
            if cand <= 0 or used >= evals:
                continue
            fc = f(cand)
            if fc > fbest:
                best, fbest = cand, fc
        delta *= ratio
    return best, fbest


def distortion(rule: Callable[[Tensor], Tensor], honest: Tensor, b: Tensor, f: int) -> float:
    """``‖rule(honest ∪ f copies of b) − mean(honest)‖₂``: what the optimal attacks maximise."""
    stack = torch.cat([honest, b.unsqueeze(0).expand(f, -1)])
    return float(torch.linalg.vector_norm(rule(stack) - honest.mean(dim=0)))


def _check_search(name: str, p: dict[str, Any]) -> dict[str, Any]:
    out = {
        "tau0": real(name, "tau0", p["tau0"], positive=True),
        "evals": integer(name, "evals", p["evals"], minimum=1),
        "expansion": real(name, "expansion", p["expansion"], positive=True),
        "ratio": real(name, "ratio", p["ratio"], positive=True),
    }
    if out["expansion"] <= 1:
        raise AttackError(f"{name}: expansion must be > 1, got expansion={p['expansion']!r}")
    if out["ratio"] >= 1:
        raise AttackError(f"{name}: ratio must be in (0, 1), got ratio={p['ratio']!r}")
    return out


def _search(
    name: str, ctx: AttackContext, make: Callable[[float], Tensor], params: dict[str, Any]
) -> tuple[Tensor, dict[str, Any]]:
    rule = ctx.need_rule(name)
    honest = ctx.honest
    f = ctx.num_byzantine
    tau, obj = line_maximize(
        lambda t: distortion(rule, honest, make(t), f),
        start=params["tau0"],
        evals=params["evals"],
        expansion=params["expansion"],
        ratio=params["ratio"],
    )
    return make(tau), {"tau": tau, "objective": obj}


def _check_alie_opt(p: dict[str, Any]) -> dict[str, Any]:
    return {
        "sign": sign("alie_opt", p["sign"]),
        "std": choice("alie_opt", "std", p["std"], ("population", "unbiased")),
        **_check_search("alie_opt", p),
    }


@register(
    "alie_opt",
    knowledge="defense-aware",
    shared=True,
    check=_check_alie_opt,
    reference="Baruch et al. 2019 with the scale searched against the rule (byzfl "
    "Optimal_ALittleIsEnough; Allouah et al., Fixing by mixing, AISTATS 2023)",
    summary="b = mu + tau*sigma, tau maximising |rule(honest + f*b) - mu| (line search, 20 evals)",
)
def alie_opt(
    ctx: AttackContext,
    *,
    sign: str = "+",
    std: str = "population",
    tau0: float = 1.0,
    evals: int = 20,
    expansion: float = 2.0,
    ratio: float = 0.8,
) -> tuple[Tensor, dict[str, Any]]:
    r"""Optimal ALIE: :math:`b(\tau) = \mu \pm \tau\sigma` with :math:`\tau` from
    :func:`line_maximize` on :func:`distortion` (module docstring). Needs ``ctx.rule`` and at
    least one honest vector; ``f = ctx.num_byzantine`` copies of ``b`` are appended to
    ``ctx.honest`` for each evaluation. ``sign`` and ``std`` as in :func:`alie`.
    Returns ``{"tau": τ*, "objective": distortion at τ*}``.
    """
    ctx.need_rule("alie_opt")
    mu, sigma = mean_std("alie_opt", ctx, "honest", std)
    s = 1.0 if sign == "+" else -1.0
    return _search(
        "alie_opt", ctx, lambda t: mu + (s * t) * sigma,
        dict(tau0=tau0, evals=evals, expansion=expansion, ratio=ratio),
    )


def _check_ipm_opt(p: dict[str, Any]) -> dict[str, Any]:
    return _check_search("ipm_opt", p)


@register(
    "ipm_opt",
    knowledge="defense-aware",
    shared=True,
    check=_check_ipm_opt,
    reference="Xie et al. 2020 with the scale searched against the rule (byzfl "
    "Optimal_InnerProductManipulation; Allouah et al. 2023)",
    summary="b = -tau*mu, tau maximising |rule(honest + f*b) - mu| (line search, 20 evals)",
)
def ipm_opt(
    ctx: AttackContext,
    *,
    tau0: float = 1.0,
    evals: int = 20,
    expansion: float = 2.0,
    ratio: float = 0.8,
) -> tuple[Tensor, dict[str, Any]]:
    r"""Optimal IPM: :math:`b(\tau) = -\tau\mu` with :math:`\tau` (the paper's ε) from
    :func:`line_maximize` on :func:`distortion`. Needs ``ctx.rule``.
    Returns ``{"tau": τ*, "objective": distortion at τ*}``.
    """
    ctx.need_rule("ipm_opt")
    mu = ctx.need_honest("ipm_opt").mean(dim=0)
    return _search(
        "ipm_opt", ctx, lambda t: mu * (-t),
        dict(tau0=tau0, evals=evals, expansion=expansion, ratio=ratio),
    )
