r"""What Byzantine parameter servers send (ByzSGD; dstar_byzsgd.md §2.10, §3.2): their registry.

The worker attacks' counterpart for replicated servers. A server attack is a pure function
``fn(ctx, **params) -> (R, d) | None`` of a :class:`ServerAttackContext`: one model per recipient
(workers in a pull, correct servers in a gather), so a Byzantine server may equivocate; ``None``
means silence. ``ctx.reference`` is the model the Byzantine server would hold if it were correct
(the simulator gives it the mean of the correct servers' models; a server process its own).

Knowledge models, in the worker attacks' vocabulary (:data:`~.base.KNOWLEDGE`):

* ``"none"``: nothing of the step (random, silent);
* ``"local"``: the server's own would-be model and its history (``ctx.reference``,
  ``ctx.history``: reverse, drop, equivocation, stale);
* ``"omniscient"``: the correct servers' models (``ctx.correct``: alie);
* ``"defense-aware"``: the recipients' outliers filter (``ctx.predicted``, ``ctx.bounds``,
  ``ctx.directions``: filter_hug).

=============  ===========================================================================
random         U[0, 1)^d, a fresh draw per recipient (Garfield ``byzServer``)
reverse        -scale * reference, scale = 100 (Garfield)
drop           reference with each coordinate zeroed w.p. p = 0.3, fresh mask per recipient
equivocation   reference + (-1)^r * scale * u, u a random unit vector: opposite pushes to
               alternate recipients (scale = 10)
alie           mu + z * sigma over the correct models (population std; z = 1.0), the worker
               ALIE's vector (:func:`~.statistical.alie_vector`)
stale          the reference model from ``tau`` steps ago (tau = 10; the oldest kept if fewer)
silent         never replies (quorum liveness)
filter_hug     predicted_r + margin * bound_r * u_r: just inside the sync outliers filter of
               recipient r, along its ascent direction u_r (margin = 0.9); without filter
               information (gather, async) it sends the reference model
=============  ===========================================================================

Use::

    from byzantium.attacks import ServerAttackContext, get_server_attack
    atk = get_server_attack("equivocation", scale=10.0)
    rows = atk(ServerAttackContext(step=t, kind="pull", correct=C, reference=C.mean(0),
                                   recipients=R, generator=gen))   # (R, d) or None
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Literal, Mapping, Sequence

import torch
from torch import Tensor

from ..registry import Registry

from .base import KNOWLEDGE, AttackError, NamedWithParams, bind_params, integer, param_defaults, real
from .statistical import alie_vector

__all__ = [
    "ServerAttackContext",
    "ServerAttack",
    "ServerEntry",
    "SERVER_REGISTRY",
    "register_server_attack",
    "get_server_attack",
    "server_attack_names",
    "describe_server_attacks",
]


@dataclass(frozen=True, kw_only=True)
class ServerAttackContext:
    """What a Byzantine server sees when it answers ``recipients`` requests at one step.

    ``correct``: the correct servers' models ``(m, d)``; ``reference``: the model this server
    would hold if it were correct ``(d,)``; ``history``: earlier reference models, oldest first.
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
        """``v`` for every recipient: a fresh ``(recipients, d)`` tensor."""
        return v[None].expand(self.recipients, -1).clone()


# ----------------------------------------------------------------------------------------------
# registry

ServerResult = Tensor | None


@dataclass(frozen=True)
class ServerEntry:
    """A registered server attack: ``fn(ctx, **params)``, its parameter check and defaults."""

    name: str
    fn: Callable[..., ServerResult]
    check: Callable[[dict[str, Any]], dict[str, Any]]
    knowledge: str
    defaults: Mapping[str, Any]
    reference: str
    summary: str


SERVER_REGISTRY: Registry[ServerEntry] = Registry("server attack", error=AttackError)


def register_server_attack(
    name: str,
    *,
    knowledge: str,
    check: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    reference: str = "",
    summary: str = "",
) -> Callable[[Callable[..., ServerResult]], Callable[..., ServerResult]]:
    """Register ``fn(ctx, **params)`` as server attack ``name``; return the public function
    ``(ctx, **params) -> (R, d) | None``, which validates the parameters (``check``) first."""

    def deco(fn: Callable[..., ServerResult]) -> Callable[..., ServerResult]:
        if name in SERVER_REGISTRY:
            raise ValueError(f"server attack {name!r} registered twice")
        if knowledge not in KNOWLEDGE:
            raise ValueError(f"server attack {name!r}: knowledge must be one of {KNOWLEDGE}")
        entry = ServerEntry(
            name=name, fn=fn, check=check or (lambda p: p), knowledge=knowledge,
            defaults=MappingProxyType(param_defaults(fn)), reference=reference, summary=summary,
        )
        SERVER_REGISTRY.add(name, entry)

        def public(ctx: ServerAttackContext, **params: Any) -> ServerResult:
            return ServerAttack(entry, params)(ctx)

        public.__name__ = fn.__name__
        public.__qualname__ = fn.__qualname__
        public.__doc__ = fn.__doc__
        public.__module__ = fn.__module__
        return public

    return deco


class ServerAttack(NamedWithParams):
    """A server attack with its parameters bound; build it with :func:`get_server_attack`.

    Attributes:
        name: registry name.
        params: every parameter, defaults included (read-only).
        knowledge: ``"none"``, ``"local"``, ``"omniscient"`` or ``"defense-aware"``.
    """

    __slots__ = ("name", "params", "knowledge", "_entry")

    def __init__(self, entry: ServerEntry, params: Mapping[str, Any]) -> None:
        self._entry = entry
        self.name = entry.name
        self.params: Mapping[str, Any] = MappingProxyType(
            bind_params(f"server attack {entry.name}", entry.defaults, entry.check, params))
        self.knowledge = entry.knowledge

    def __call__(self, ctx: ServerAttackContext) -> ServerResult:
        """The ``(ctx.recipients, d)`` models this server sends, or ``None`` (silence)."""
        if not isinstance(ctx, ServerAttackContext):
            raise AttackError(
                f"server attack {self.name}: expected a ServerAttackContext, got {type(ctx).__name__}")
        return self._entry.fn(ctx, **self.params)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.name, dict(self.params)))


def _rebuild(name: str, params: dict[str, Any]) -> ServerAttack:
    return get_server_attack(name, **params)


def get_server_attack(name: str, **params: Any) -> ServerAttack:
    """The server attack ``name`` with ``params`` bound, e.g. ``get_server_attack("reverse", scale=10)``."""
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in SERVER_REGISTRY:
        raise AttackError(
            f"unknown server attack {name!r}; available: {', '.join(server_attack_names())}")
    return ServerAttack(SERVER_REGISTRY[key], params)


def server_attack_names() -> list[str]:
    """Registered server attack names, sorted."""
    return sorted(SERVER_REGISTRY)


def describe_server_attacks() -> list[tuple[str, str, str, str]]:
    """``(name, knowledge, summary, defaults)`` rows for ``byzantium list attacks``."""
    rows = []
    for name in server_attack_names():
        e = SERVER_REGISTRY[name]
        defaults = ", ".join(f"{k}={v}" for k, v in e.defaults.items())
        rows.append((name, e.knowledge, e.summary, defaults))
    return rows


# ----------------------------------------------------------------------------------------------
# parameter checks


def _finite(name: str, param: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def check(p: dict[str, Any]) -> dict[str, Any]:
        return {**p, param: real(f"server attack {name}", param, p[param])}

    return check


def _check_drop(p: dict[str, Any]) -> dict[str, Any]:
    v = real("server attack drop", "p", p["p"])
    if not 0.0 <= v <= 1.0:
        raise AttackError(f"server attack drop: p must be in [0, 1], got p={p['p']!r}")
    return {"p": v}


def _check_stale(p: dict[str, Any]) -> dict[str, Any]:
    return {"tau": integer("server attack stale", "tau", p["tau"], minimum=1)}


# ----------------------------------------------------------------------------------------------
# the attacks


@register_server_attack(
    "random", knowledge="none", reference="Garfield byzServer (Guerraoui et al., DSN 2021)",
    summary="U[0, 1)^d, a fresh draw per recipient",
)
def random_models(ctx: ServerAttackContext) -> Tensor:
    """Uniform noise models in ``[0, 1)^d``, one draw per recipient from ``ctx.generator``."""
    d = ctx.reference.numel()
    return torch.rand((ctx.recipients, d), generator=ctx.generator, dtype=ctx.reference.dtype)


@register_server_attack(
    "reverse", knowledge="local", check=_finite("reverse", "scale"),
    reference="Garfield (Guerraoui et al., DSN 2021)", summary="-scale * reference, to everyone",
)
def reverse(ctx: ServerAttackContext, *, scale: float = 100.0) -> Tensor:
    """The reference model reversed and scaled, the same for every recipient."""
    return ctx.repeat(-scale * ctx.reference)


@register_server_attack(
    "drop", knowledge="local", check=_check_drop,
    summary="reference with each coordinate zeroed w.p. p, a fresh mask per recipient",
)
def drop(ctx: ServerAttackContext, *, p: float = 0.3) -> Tensor:
    """The reference model with coordinates dropped (zeroed) at random, per recipient."""
    keep = torch.rand((ctx.recipients, ctx.reference.numel()), generator=ctx.generator) >= p
    return ctx.reference[None] * keep.to(ctx.reference.dtype)


@register_server_attack(
    "equivocation", knowledge="local", check=_finite("equivocation", "scale"),
    summary="reference + (-1)^r * scale * u (u a random unit vector): opposite pushes to "
    "alternate recipients",
)
def equivocation(ctx: ServerAttackContext, *, scale: float = 10.0) -> Tensor:
    """Different models to different recipients: ``±scale`` along one random unit direction."""
    u = torch.randn(ctx.reference.numel(), generator=ctx.generator, dtype=ctx.reference.dtype)
    u = u / u.norm().clamp_min(1e-12)
    signs = 1.0 - 2.0 * (torch.arange(ctx.recipients) % 2).to(ctx.reference.dtype)
    return ctx.reference[None] + scale * signs[:, None] * u[None]


@register_server_attack(
    "alie", knowledge="omniscient", check=_finite("alie", "z"),
    reference="Baruch, Baruch, Goldberg, A little is enough, NeurIPS 2019 (on models)",
    summary="mu + z * sigma over the correct models (population std), to everyone",
)
def alie(ctx: ServerAttackContext, *, z: float = 1.0) -> Tensor:
    """A Little Is Enough on models: the worker ALIE's vector over ``ctx.correct``."""
    return ctx.repeat(alie_vector(ctx.correct, z, ddof=0))


@register_server_attack(
    "stale", knowledge="local", check=_check_stale,
    summary="the reference model from tau steps ago (the oldest kept if fewer)",
)
def stale(ctx: ServerAttackContext, *, tau: int = 10) -> Tensor:
    """Replays an old reference model from ``ctx.history`` (the current one if there is none)."""
    hist = list(ctx.history)
    if not hist:
        return ctx.repeat(ctx.reference)
    return ctx.repeat(hist[max(0, len(hist) - tau)])


@register_server_attack("silent", knowledge="none", summary="never replies (quorum liveness)")
def silent(ctx: ServerAttackContext) -> None:
    """Sends nothing: recipients must make progress on the other servers' replies."""
    return None


@register_server_attack(
    "filter_hug", knowledge="defense-aware", check=_finite("filter_hug", "margin"),
    summary="predicted_r + margin * bound_r * u_r: just inside recipient r's outliers filter "
    "(sync pulls; else the reference model)",
)
def filter_hug(ctx: ServerAttackContext, *, margin: float = 0.9) -> Tensor:
    """As far from each recipient's filter prediction as its bound lets through, along its
    ascent direction; the reference model when the context has no filter information."""
    if ctx.predicted is None or ctx.bounds is None or ctx.directions is None:
        return ctx.repeat(ctx.reference)
    b = torch.where(torch.isfinite(ctx.bounds), ctx.bounds, torch.zeros_like(ctx.bounds))
    return ctx.predicted + margin * b[:, None].to(ctx.predicted.dtype) * ctx.directions
