r"""What Byzantine parameter servers send (dstar_byzsgd.md §2.10, §3.2).

A behaviour is a pure function ``fn(ctx, **params) -> (R, d) | None``: one model per recipient
(workers in a pull, correct servers in a gather), so a Byzantine server may equivocate; ``None``
means silence. ``ctx.reference`` is the model the Byzantine server would hold if it were correct;
the simulator gives it the mean of the correct servers' models (omniscient).

=============  ===========================================================================
random         U[0, 1)^d, a fresh draw per recipient (Garfield ``byzServer``)
reverse        -scale * reference, scale = 100 (Garfield)
drop           reference with each coordinate zeroed w.p. p = 0.3, fresh mask per recipient
equivocation   reference + (-1)^r * scale * u, u a random unit vector: opposite pushes to
               alternate recipients (scale = 10)
alie           mu + z * sigma over the correct models (population std; z = 1.0)
stale          the reference model from ``tau`` steps ago (tau = 10; the oldest kept if fewer)
silent         never replies (quorum liveness)
filter_hug     predicted_r + margin * bound_r * u_r: just inside the sync outliers filter of
               recipient r, along its ascent direction u_r (margin = 0.9); without filter
               information (gather, async) it sends reference + bound-free ascent: reference
=============  ===========================================================================
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Literal, Sequence

import torch
from torch import Tensor

__all__ = ["ServerAttackContext", "SERVER_ATTACKS", "get_server_attack", "server_attack_names"]


@dataclass(frozen=True, kw_only=True)
class ServerAttackContext:
    """What a Byzantine server sees when it answers ``recipients`` requests at one step.

    ``predicted`` / ``bounds`` / ``directions`` (sync variant, pulls only): each recipient
    worker's outliers-filter prediction ``(R, d)``, bound ``(R,)`` and a unit ascent direction
    ``(R, d)`` (the worker's last gradient, normalised), for filter-hugging.
    """

    step: int
    kind: Literal["pull", "gather"]
    correct: Tensor
    reference: Tensor
    recipients: int
    generator: torch.Generator
    history: Sequence[Tensor] = field(default_factory=tuple)
    predicted: Tensor | None = None
    bounds: Tensor | None = None
    directions: Tensor | None = None

    def repeat(self, v: Tensor) -> Tensor:
        return v[None].expand(self.recipients, -1).clone()


def _random(ctx: ServerAttackContext) -> Tensor:
    d = ctx.reference.numel()
    return torch.rand((ctx.recipients, d), generator=ctx.generator, dtype=ctx.reference.dtype)


def _reverse(ctx: ServerAttackContext, *, scale: float = 100.0) -> Tensor:
    return ctx.repeat(-scale * ctx.reference)


def _drop(ctx: ServerAttackContext, *, p: float = 0.3) -> Tensor:
    keep = torch.rand((ctx.recipients, ctx.reference.numel()), generator=ctx.generator) >= p
    return ctx.reference[None] * keep.to(ctx.reference.dtype)


def _equivocation(ctx: ServerAttackContext, *, scale: float = 10.0) -> Tensor:
    u = torch.randn(ctx.reference.numel(), generator=ctx.generator, dtype=ctx.reference.dtype)
    u = u / u.norm().clamp_min(1e-12)
    signs = 1.0 - 2.0 * (torch.arange(ctx.recipients) % 2).to(ctx.reference.dtype)
    return ctx.reference[None] + scale * signs[:, None] * u[None]


def _alie(ctx: ServerAttackContext, *, z: float = 1.0) -> Tensor:
    mu = ctx.correct.mean(dim=0)
    sigma = ctx.correct.std(dim=0, unbiased=False) if ctx.correct.shape[0] > 1 else torch.zeros_like(mu)
    return ctx.repeat(mu + z * sigma)


def _stale(ctx: ServerAttackContext, *, tau: int = 10) -> Tensor:
    hist = list(ctx.history)
    if not hist:
        return ctx.repeat(ctx.reference)
    return ctx.repeat(hist[max(0, len(hist) - tau)])


def _silent(ctx: ServerAttackContext) -> None:
    return None


def _filter_hug(ctx: ServerAttackContext, *, margin: float = 0.9) -> Tensor:
    if ctx.predicted is None or ctx.bounds is None or ctx.directions is None:
        return ctx.repeat(ctx.reference)
    b = torch.where(torch.isfinite(ctx.bounds), ctx.bounds, torch.zeros_like(ctx.bounds))
    return ctx.predicted + margin * b[:, None].to(ctx.predicted.dtype) * ctx.directions


SERVER_ATTACKS: dict[str, Callable[..., Tensor | None]] = {
    "random": _random,
    "reverse": _reverse,
    "drop": _drop,
    "equivocation": _equivocation,
    "alie": _alie,
    "stale": _stale,
    "silent": _silent,
    "filter_hug": _filter_hug,
}


def server_attack_names() -> list[str]:
    return sorted(SERVER_ATTACKS)


def get_server_attack(name: str, **params: Any) -> Callable[[ServerAttackContext], Tensor | None]:
    """The behaviour ``name`` with ``params`` bound, e.g. ``get_server_attack("reverse", scale=10)``."""
    if name not in SERVER_ATTACKS:
        raise ValueError(f"get_server_attack: unknown behaviour {name!r}; available: {server_attack_names()}")
    fn = SERVER_ATTACKS[name]
    allowed = [p for p in inspect.signature(fn).parameters if p != "ctx"]
    extra = sorted(set(params) - set(allowed))
    if extra:
        raise ValueError(f"get_server_attack({name!r}): unknown parameter(s) {extra}; accepted: {allowed}")
    for k, v in params.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"get_server_attack({name!r}): {k} must be a finite number, got {k}={v!r}")
    if name == "stale" and (not isinstance(params.get("tau", 1), int) or params.get("tau", 1) < 1):
        raise ValueError(f"get_server_attack('stale'): tau must be an int >= 1, got tau={params['tau']!r}")
    if name == "drop" and not 0 <= params.get("p", 0.3) <= 1:
        raise ValueError(f"get_server_attack('drop'): p must be in [0, 1], got p={params['p']!r}")
    bound = partial(fn, **params)
    bound.__name__ = name  # type: ignore[attr-defined]
    return bound
