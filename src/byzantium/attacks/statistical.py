"""Attacks built from the statistics of the honest vectors: ALIE, IPM, MinMax, MinSum.

Each returns one vector that every Byzantine slot sends (``shared``): colluders agree, so they win
every vote where they hold a majority of copies.
"""

from __future__ import annotations

import math
import warnings
from statistics import NormalDist
from typing import Any

import torch
from torch import Tensor

from .base import AttackContext, AttackError, AttackWarning, choice, real, register, sign

__all__ = [
    "alie",
    "alie_vector",
    "alie_supporters",
    "alie_z_max",
    "alie_z",
    "ipm",
    "minmax",
    "minsum",
    "perturbation",
]

_SOURCES = ("honest", "own", "all")


def _source_knowledge(p: dict[str, Any]) -> str:
    return "local" if p["source"] == "own" else "omniscient"


def stats_rows(name: str, ctx: AttackContext, source: str, at_least: int = 1) -> Tensor:
    """Rows to estimate ``μ, σ`` from: honest, own, or both (the authors' ByzShield code)."""
    if source == "honest":
        return ctx.need_honest(name, at_least)
    own = ctx.need_own(name)
    x = own if source == "own" else torch.cat([ctx.honest, own])
    if x.shape[0] < at_least:
        raise AttackError(
            f"{name}: source={source!r} needs at least {at_least} vector(s), got {x.shape[0]}"
        )
    return x


# ----------------------------------------------------------------------------------------------
# ALIE


def alie_supporters(n: int, f: int) -> int:
    """``s = ⌊n/2 + 1⌋ − f``: honest inputs the Byzantines need on their side (Baruch et al.)."""
    return n // 2 + 1 - f


def alie_z_max(n: int, f: int, *, z_rule: str = "n") -> float:
    r"""ALIE's :math:`z_{max} = \Phi^{-1}(p)` from the formula as is (may be ``±inf`` or ``nan``).

    ``z_rule="n"`` (the paper, Garfield): :math:`p = (n - s)/n`. ``z_rule="honest"`` (blades,
    FLPoison, epfml): :math:`p = (h - s)/h` with :math:`h = n - f`. With :math:`s` from
    :func:`alie_supporters`. E.g. ``n=20, f=8``: 1.036 (``"n"``) vs 0.674 (``"honest"``).
    """
    z_rule = choice("alie", "z_rule", z_rule, ("n", "honest"))
    s = alie_supporters(n, f)
    den = n if z_rule == "n" else n - f
    if den <= 0:
        return math.nan
    p = (den - s) / den
    if p <= 0:
        return -math.inf
    if p >= 1:
        return math.inf
    return NormalDist().inv_cdf(p)


def alie_z(n: int, f: int, *, z_rule: str = "n") -> tuple[float, str | None]:
    """:func:`alie_z_max` with the fallback rule; returns ``(z, note)``, ``note`` None if none.

    Fallback rule (the paper leaves these cases open):

    1. ``s <= 0`` (the Byzantines are a majority and need no supporter; ``z_max = +inf``): use
       ``s = 1``, the largest finite value of the formula, ``Φ⁻¹((m − 1)/m)`` with ``m = n``
       (or ``h``).
    2. ``z_max <= 0`` or undefined (``f = 0``; even ``n`` with ``f = 1`` gives exactly 0;
       ``z_rule="honest"`` with ``h <= s``): use ``z = 0``, so ``b = μ`` and the attack has no
       effect. Pass an explicit ``z`` to force a value.
    """
    z = alie_z_max(n, f, z_rule=z_rule)
    s = alie_supporters(n, f)
    m = n if z_rule == "n" else n - f
    note = None
    if z == math.inf:
        z = NormalDist().inv_cdf((m - 1) / m) if m > 1 else 0.0
        note = (
            f"alie: z_max is infinite for n={n}, f={f}, z_rule={z_rule!r} (s = floor(n/2 + 1) - f "
            f"= {s} <= 0: the Byzantines hold a majority); falling back to s = 1, z = {z:.4f}"
        )
    if not z > 0:  # also catches nan
        note = (
            f"alie: z_max = {z:.4f} for n={n}, f={f}, z_rule={z_rule!r} (s = {s}); it is not > 0, "
            "so ALIE falls back to z = 0 and sends the honest mean (no effect); pass z=<float> "
            "to force a value"
        )
        z = 0.0
    return z, note


def _check_alie(p: dict[str, Any]) -> dict[str, Any]:
    z = p["z"]
    if isinstance(z, str):
        if z.strip().lower() != "auto":
            raise AttackError(f"alie: z must be 'auto' or a finite number, got z={z!r}")
        z = "auto"
    else:
        z = real("alie", "z", z)
    return {
        "z": z,
        "z_rule": choice("alie", "z_rule", p["z_rule"], ("n", "honest")),
        "sign": sign("alie", p["sign"]),
        "std": choice("alie", "std", p["std"], ("population", "unbiased")),
        "source": choice("alie", "source", p["source"], _SOURCES),
    }


def coordinate_std(x: Tensor, mu: Tensor, ddof: int = 0) -> Tensor:
    """``sqrt(Σ_i (x_i − μ)² / (h − ddof))`` per coordinate (faster than ``Tensor.std`` on CPU)."""
    dev = x - mu
    return (dev * dev).sum(dim=0).div_(x.shape[0] - ddof).sqrt_()


def alie_vector(x: Tensor, z: float, *, ddof: int = 0) -> Tensor:
    """ALIE's ``μ + z·σ`` over the rows of ``x`` (coordinate-wise mean and std, ``ddof`` 0 or 1).

    Shared by the worker attack (:func:`alie`) and the Byzantine-server one
    (:mod:`.server`), so both send the same vector for the same rows and ``z``.
    """
    mu = x.mean(dim=0)
    return mu + z * coordinate_std(x, mu, ddof)


def mean_std(name: str, ctx: AttackContext, source: str, std: str) -> tuple[Tensor, Tensor]:
    """Coordinate-wise mean and std (population ``ddof=0`` or unbiased ``ddof=1``) of the source."""
    x = stats_rows(name, ctx, source, at_least=2 if std == "unbiased" else 1)
    mu = x.mean(dim=0)
    return mu, coordinate_std(x, mu, 1 if std == "unbiased" else 0)


@register(
    "alie",
    knowledge=_source_knowledge,
    shared=True,
    check=_check_alie,
    reference="Baruch, Baruch, Goldberg, A little is enough: circumventing defenses for "
    "distributed learning, NeurIPS 2019",
    summary="b = mu + z*sigma, z = Phi^-1((n - s)/n), s = floor(n/2 + 1) - f (paper's z_max)",
)
def alie(
    ctx: AttackContext,
    *,
    z: float | str = "auto",
    z_rule: str = "n",
    sign: str = "+",
    std: str = "population",
    source: str = "honest",
) -> tuple[Tensor, dict[str, Any]]:
    r"""A Little Is Enough (Baruch et al. 2019): :math:`b = \mu + z\,\sigma`, same for all slots.

    Convention (the paper's Algorithm 1): :math:`s = \lfloor n/2 + 1 \rfloor - f`,
    :math:`z_{max} = \Phi^{-1}((n - s)/n)`, with ``n = ctx.n`` (all aggregated vectors, Byzantine
    included; for dSTAR the first ``k``) and ``f = ctx.num_byzantine``. Parameters:

    * ``z``: ``"auto"`` (``z_max``, with the fallback of :func:`alie_z`) or a number (DETOX and
      ByzShield code hard-code 1.0; byzfl's default is 1.5).
    * ``z_rule``: ``"n"`` (default, paper, Garfield) or ``"honest"``: ``Φ⁻¹((h − s)/h)``,
      ``h = n − f`` (blades, FLPoison, epfml).
    * ``sign``: ``"+"`` (default: ``μ_j + z_max·σ_j`` as the paper's rule is usually quoted, and
      byzfl, blades, FLPoison, Garfield and the ByzShield/DETOX code) or
      ``"-"`` (epfml and some re-implementations of the authors' gradient code). ``σ >= 0``, so
      the sign only picks which side of ``μ`` every coordinate moves to; on SGD a ``+zσ`` shift
      of uploaded parameters is a ``−zσ`` shift of gradients, hence the split between tools.
    * ``std``: ``"population"`` (default, ``ddof = 0``: byzfl, ByzShield code) or ``"unbiased"``
      (``ddof = 1``: Garfield's ``torch.std``).
    * ``source``: statistics over ``"honest"`` (default, omniscient), ``"own"`` (the Byzantine
      slots' own honest vectors: the paper's non-omniscient setting, Garfield; local) or ``"all"``
      (both: the ByzShield/DETOX code, which uses every received copy).

    Returns the vector and ``{"z": resolved z}`` for the run record.
    """
    ddof = 1 if std == "unbiased" else 0
    x = stats_rows("alie", ctx, source, at_least=ddof + 1)
    info: dict[str, Any] = {}
    if z == "auto":
        z, note = alie_z(ctx.n, ctx.num_byzantine, z_rule=z_rule)
        if note is not None:
            warnings.warn(note, AttackWarning, stacklevel=2)
            info["fallback"] = note
    info["z"] = float(z)
    zs = float(z) if sign == "+" else -float(z)
    return alie_vector(x, zs, ddof=ddof), info


# ----------------------------------------------------------------------------------------------
# IPM


def _check_ipm(p: dict[str, Any]) -> dict[str, Any]:
    return {
        "epsilon": real("ipm", "epsilon", p["epsilon"], positive=True),
        "source": choice("ipm", "source", p["source"], _SOURCES),
    }


@register(
    "ipm",
    knowledge=_source_knowledge,
    shared=True,
    check=_check_ipm,
    reference="Xie, Koyejo, Gupta, Fall of empires: breaking Byzantine-tolerant SGD by inner "
    "product manipulation, UAI 2019 (PMLR 2020)",
    summary="b = -epsilon * mu (epsilon = 0.1; DETOX/ByzShield 'foe' use 100)",
)
def ipm(ctx: AttackContext, *, epsilon: float = 0.1, source: str = "honest") -> Tensor:
    r"""Inner-product manipulation (Xie, Koyejo, Gupta 2020): :math:`b = -\epsilon\,\mu`.

    ``μ`` is the mean of the honest vectors (``source`` as in :func:`alie`). ``epsilon > 0``;
    default 0.1, the paper's small-ε setting that slips past distance-based rules (Krum);
    ε ≥ 10 dominates means and medians (Garfield 10, ByzShield/DETOX ``foe`` 100, byzfl 2).
    """
    x = stats_rows("ipm", ctx, source)
    return x.mean(dim=0) * (-epsilon)


# ----------------------------------------------------------------------------------------------
# MinMax / MinSum


def perturbation(mu: Tensor, x: Tensor, direction: str) -> Tensor:
    """Shejwalkar & Houmansadr's perturbation ``p`` (the attack sends ``μ − γ·p``).

    ``"std"``: coordinate-wise std of ``x`` around ``μ`` (its mean); ``"sign"``: ``sign(μ)``;
    ``"unit"``: ``μ/‖μ‖`` (zero if ``μ = 0``).
    """
    if direction == "std":
        return coordinate_std(x, mu)
    if direction == "sign":
        return torch.sign(mu)
    norm = torch.linalg.vector_norm(mu)
    return mu / norm if norm > 0 else torch.zeros_like(mu)


def _check_minmax(p: dict[str, Any]) -> dict[str, Any]:
    return {"direction": choice("minmax", "direction", p["direction"], ("std", "sign", "unit"))}


@register(
    "minmax",
    knowledge="omniscient",
    shared=True,
    check=_check_minmax,
    reference="Shejwalkar, Houmansadr, Manipulating the Byzantine: optimizing model poisoning "
    "attacks and defenses for federated learning, NDSS 2021",
    summary="b = mu - gamma*p, largest gamma with max_j |b - x_j| <= max_ij |x_i - x_j|",
)
def minmax(ctx: AttackContext, *, direction: str = "std") -> tuple[Tensor, dict[str, Any]]:
    r"""Min-Max (Shejwalkar & Houmansadr 2021): :math:`b = \mu - \gamma^* p` with

    .. math:: \gamma^* = \max\{\gamma \ge 0 : \max_j \|b - x_j\| \le \max_{i,j}\|x_i - x_j\|\}

    over the honest vectors ``x``. The paper finds ``γ*`` by binary search; each constraint is a
    convex quadratic in ``γ`` (``‖μ − x_j − γp‖² = c_j − 2γa_j + γ²‖p‖²`` with
    ``a_j = ⟨μ − x_j, p⟩``, ``c_j = ‖μ − x_j‖² ≤ D²``), so we take the exact answer
    ``γ* = min_j (a_j + sqrt(a_j² + ‖p‖²(D² − c_j))) / ‖p‖²``. ``direction`` picks ``p``
    (:func:`perturbation`; default ``"std"``, the paper's "inverse std"). Returns ``{"gamma": γ*}``.
    """
    x = ctx.need_honest("minmax")
    mu = x.mean(dim=0)
    p = perturbation(mu, x, direction)
    pp = float(torch.dot(p, p))
    if pp == 0.0:
        return mu, {"gamma": 0.0}
    dev = mu - x  # (h, d)
    a = dev @ p
    c = (dev * dev).sum(dim=1)
    diam = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist").max()
    slack = (diam * diam - c).clamp_min(0)
    gam = ((a + torch.sqrt(a * a + pp * slack)) / pp).min()
    return mu - gam * p, {"gamma": float(gam)}


def _check_minsum(p: dict[str, Any]) -> dict[str, Any]:
    return {"direction": choice("minsum", "direction", p["direction"], ("std", "sign", "unit"))}


@register(
    "minsum",
    knowledge="omniscient",
    shared=True,
    check=_check_minsum,
    reference="Shejwalkar, Houmansadr, Manipulating the Byzantine: optimizing model poisoning "
    "attacks and defenses for federated learning, NDSS 2021",
    summary="b = mu - gamma*p, largest gamma with sum_j |b - x_j|^2 <= max_i sum_j |x_i - x_j|^2",
)
def minsum(ctx: AttackContext, *, direction: str = "std") -> tuple[Tensor, dict[str, Any]]:
    r"""Min-Sum (Shejwalkar & Houmansadr 2021): :math:`b = \mu - \gamma^* p` with

    .. math:: \gamma^* = \max\{\gamma \ge 0 : \textstyle\sum_j \|b - x_j\|^2
              \le \max_i \sum_j \|x_i - x_j\|^2\}.

    Since :math:`\sum_j \|y - x_j\|^2 = h\|y - \mu\|^2 + \sum_j \|x_j - \mu\|^2`, the binary search
    of the paper has the closed form :math:`\gamma^* = \max_i \|x_i - \mu\| / \|p\|`.
    ``direction`` as in :func:`minmax`. Returns ``{"gamma": γ*}``.
    """
    x = ctx.need_honest("minsum")
    mu = x.mean(dim=0)
    p = perturbation(mu, x, direction)
    pn = torch.linalg.vector_norm(p)
    if float(pn) == 0.0:
        return mu, {"gamma": 0.0}
    gam = torch.linalg.vector_norm(x - mu, dim=1).max() / pn
    return mu - gam * p, {"gamma": float(gam)}
