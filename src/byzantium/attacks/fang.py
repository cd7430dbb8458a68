"""Fang et al.'s full-knowledge attack on coordinate-wise rules ("LMP", local model poisoning).

Fang, Cao, Jia, Gong, "Local model poisoning attacks to Byzantine-robust federated learning",
USENIX Security 2020, §4 (the attack on trimmed mean / median with full knowledge), written for
gradients: per coordinate ``j`` the attacker pushes the aggregate against the honest direction
``s_j = sign(mu_j)``, sending values just beyond the honest extreme on the other side, scaled by a
random factor in ``[1, b]``:

* ``mu_j > 0`` (the honest step decreases the parameter): ``b_j`` below the honest minimum
  ``m_j``: uniform in ``[m_j / b, m_j]`` if ``m_j > 0``, else in ``[b m_j, m_j]``;
* ``mu_j <= 0``: ``b_j`` above the honest maximum ``M_j``: uniform in ``[M_j, b M_j]`` if
  ``M_j > 0``, else in ``[M_j, M_j / b]``.

Each Byzantine slot draws its own factors from ``ctx.generator`` (so the values differ, which is
what keeps them from being trimmed together). ``b = 2`` as in the paper's experiments and
blades / FLPoison.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import AttackContext, AttackError, real, register

__all__ = ["fang"]


def _check_fang(p: dict[str, Any]) -> dict[str, Any]:
    b = real("fang", "b", p["b"])
    if b < 1:
        raise AttackError(f"fang: b must be >= 1 (the scaling range [1, b]), got b={p['b']!r}")
    return {"b": b}


@register(
    "fang",
    knowledge="omniscient",
    shared=False,
    check=_check_fang,
    reference="Fang, Cao, Jia, Gong, Local model poisoning attacks to Byzantine-robust federated "
    "learning, USENIX Security 2020 (full-knowledge trimmed-mean/median attack)",
    summary="per coordinate: beyond the honest min (mu_j > 0) or max (mu_j <= 0), by a random "
    "factor in [1, b] (b = 2)",
)
def fang(ctx: AttackContext, *, b: float = 2.0) -> Tensor:
    """One vector per slot, every coordinate on the far side of the honest range (module doc)."""
    x = ctx.honest
    if x.shape[0] == 0:
        raise AttackError("fang: needs the honest vectors of the step (got none)")
    g = ctx.need_generator("fang")
    mu, lo, hi = x.mean(dim=0), x.min(dim=0).values, x.max(dim=0).values
    u = torch.rand((ctx.slots, ctx.d), generator=g, dtype=x.dtype, device=g.device).to(x.device)
    factor = 1.0 + (b - 1.0) * u  # in [1, b]
    down = mu > 0  # push below the honest minimum
    below = torch.where(lo > 0, lo / factor, lo * factor)
    above = torch.where(hi > 0, hi * factor, hi / factor)
    return torch.where(down, below, above)
