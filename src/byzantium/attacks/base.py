"""The attack interface: a context of what the adversary may see, a registry, and a bound attack.

An attack is a pure function ``fn(ctx, **params)`` of an :class:`AttackContext` that returns the
vectors the Byzantine slots send, plus a declared *knowledge model*:

* ``"none"``: uses nothing of the step (zero, constant, NaN/Inf, gaussian noise);
* ``"local"``: only what the Byzantine slots would honestly send (``ctx.own``);
* ``"omniscient"``: all honest vectors of the step (``ctx.honest``);
* ``"defense-aware"``: the honest vectors and the server's rule (``ctx.rule``).

:func:`get` binds parameters (validated once, with the paper's defaults filled in) into an
:class:`Attack` object; the engine calls it every step.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Literal, Mapping

import torch
from torch import Tensor

from ..registry import Registry

__all__ = [
    "KNOWLEDGE",
    "AttackError",
    "AttackWarning",
    "AttackContext",
    "Attack",
    "Entry",
    "REGISTRY",
    "register",
    "param_defaults",
    "bind_params",
    "get",
    "names",
    "describe",
]

Knowledge = Literal["none", "local", "omniscient", "defense-aware"]
KNOWLEDGE: tuple[str, ...] = ("none", "local", "omniscient", "defense-aware")


class AttackError(ValueError):
    """Bad attack name, parameter or context."""


class AttackWarning(UserWarning):
    """An attack fell back from its formula (e.g. ALIE's z_max undefined for this n, f)."""


@dataclass(frozen=True, kw_only=True)
class AttackContext:
    """What the adversary sees at one step. Attacks never modify these tensors.

    Attributes:
        honest: ``(h, d)`` honest vectors of the step at the granularity the server aggregates
            (per-file gradients for vote schemes, per-worker gradients for plain schemes, encoded
            messages for DRACO's cyclic code). ``h`` may be 0 for attacks that do not need them.
        n: number of vectors the server's rule aggregates, Byzantine ones included (for dSTAR,
            the ``k`` first arrivals).
        num_byzantine: how many of those ``n`` are Byzantine (``q``, or ``c_max`` after voting).
        own: ``(slots, d)`` what each Byzantine slot would honestly have sent, or ``None``.
        slots: number of vectors to return; defaults to ``own.shape[0]`` if ``own`` is given,
            else ``num_byzantine``.
        rule: the server's aggregation ``(m, d) -> (d,)``, for defense-aware attacks.
        generator: the source of all randomness (``torch.Generator``).
    """

    honest: Tensor
    n: int
    num_byzantine: int
    own: Tensor | None = None
    slots: int | None = None
    rule: Callable[[Tensor], Tensor] | None = None
    generator: torch.Generator | None = None

    def __post_init__(self) -> None:
        h = self.honest
        if not isinstance(h, Tensor) or h.dim() != 2 or not h.is_floating_point():
            desc = (f"shape {tuple(h.shape)}, dtype {h.dtype}" if isinstance(h, Tensor)
                    else type(h).__name__)
            raise AttackError(f"AttackContext: honest must be a floating (h, d) tensor, got {desc}")
        for fld in ("n", "num_byzantine"):
            v = getattr(self, fld)
            if isinstance(v, bool) or not isinstance(v, int):
                raise AttackError(f"AttackContext: {fld} must be an int, got {v!r}")
        if self.n < 1 or not 0 <= self.num_byzantine <= self.n:
            raise AttackError(
                "AttackContext: requires n >= 1 and 0 <= num_byzantine <= n, "
                f"got n={self.n}, num_byzantine={self.num_byzantine}"
            )
        own = self.own
        if own is not None:
            if not isinstance(own, Tensor) or own.dim() != 2:
                raise AttackError(
                    "AttackContext: own must be a (slots, d) tensor or None, got "
                    f"{tuple(own.shape) if isinstance(own, Tensor) else type(own).__name__}"
                )
            if own.shape[1] != h.shape[1] or own.dtype != h.dtype or own.device != h.device:
                raise AttackError(
                    "AttackContext: own and honest must share d, dtype and device, got "
                    f"own {tuple(own.shape)} {own.dtype} {own.device}, "
                    f"honest {tuple(h.shape)} {h.dtype} {h.device}"
                )
        slots = self.slots
        if slots is None:
            slots = own.shape[0] if own is not None else self.num_byzantine
        elif isinstance(slots, bool) or not isinstance(slots, int) or slots < 0:
            raise AttackError(f"AttackContext: slots must be an int >= 0, got {slots!r}")
        elif own is not None and own.shape[0] != slots:
            raise AttackError(
                f"AttackContext: slots={slots} but own has {own.shape[0]} rows (one per slot)"
            )
        object.__setattr__(self, "slots", slots)
        if self.rule is not None and not callable(self.rule):
            raise AttackError(f"AttackContext: rule must be callable or None, got {self.rule!r}")
        if self.generator is not None and not isinstance(self.generator, torch.Generator):
            raise AttackError(
                f"AttackContext: generator must be a torch.Generator or None, "
                f"got {type(self.generator).__name__}"
            )

    @property
    def d(self) -> int:
        return int(self.honest.shape[1])

    @property
    def h(self) -> int:
        return int(self.honest.shape[0])

    # -- accessors that raise a clear error naming the attack that needed the field ----------
    def need_honest(self, name: str, at_least: int = 1) -> Tensor:
        if self.h < at_least:
            raise AttackError(f"{name}: needs at least {at_least} honest vector(s), got h={self.h}")
        return self.honest

    def need_own(self, name: str) -> Tensor:
        if self.own is None:
            raise AttackError(
                f"{name}: needs ctx.own (what each Byzantine slot would honestly send), got None"
            )
        return self.own

    def need_rule(self, name: str) -> Callable[[Tensor], Tensor]:
        if self.rule is None:
            raise AttackError(
                f"{name}: knowledge 'defense-aware' needs ctx.rule (the server's aggregation), "
                "got rule=None"
            )
        return self.rule

    def need_generator(self, name: str) -> torch.Generator:
        if self.generator is None:
            raise AttackError(f"{name}: needs ctx.generator (a torch.Generator), got None")
        return self.generator


# ----------------------------------------------------------------------------------------------
# registry

RawResult = Tensor | tuple[Tensor, dict[str, Any]]


@dataclass(frozen=True)
class Entry:
    """A registered attack.

    ``fn(ctx, **params)`` returns either one ``(d,)`` vector (the same for every slot) or a
    ``(slots, d)`` stack, optionally paired with a dict of resolved values for the run record
    (e.g. ALIE's z). ``check(params) -> params`` validates and normalises parameter values.
    ``knowledge`` and ``shared`` may depend on the parameters. A data-level attack carries its
    ``labels(y, num_classes, **params)``: the labels its Byzantine slots train on.
    """

    name: str
    fn: Callable[..., RawResult]
    check: Callable[[dict[str, Any]], dict[str, Any]]
    knowledge: Callable[[Mapping[str, Any]], str]
    shared: Callable[[Mapping[str, Any]], bool]
    labels: Callable[..., Tensor] | None
    defaults: Mapping[str, Any]
    reference: str
    summary: str

    @property
    def data_level(self) -> bool:
        return self.labels is not None


REGISTRY: Registry[Entry] = Registry("attack", error=AttackError)


def _const(v: Any) -> Callable[[Mapping[str, Any]], Any]:
    return lambda params: v


def register(
    name: str,
    *,
    knowledge: str | Callable[[Mapping[str, Any]], str],
    shared: bool | Callable[[Mapping[str, Any]], bool],
    check: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    labels: Callable[..., Tensor] | None = None,
    reference: str = "",
    summary: str = "",
) -> Callable[[Callable[..., RawResult]], Callable[..., Tensor]]:
    """Register ``fn(ctx, **params)``; return the public function ``(ctx, **params) -> (slots, d)``.

    The public function validates the parameters (``check``), runs ``fn`` and broadcasts a single
    vector to every slot (a fresh tensor, never a view of the context). Passing
    ``labels(y, num_classes, **params) -> y'`` makes the attack data-level: the engine trains
    the Byzantine slots on ``y'`` (:meth:`Attack.transform_labels`).
    """

    def deco(fn: Callable[..., RawResult]) -> Callable[..., Tensor]:
        sig = inspect.signature(fn)
        defaults = param_defaults(fn)
        entry = Entry(
            name=name,
            fn=fn,
            check=check or (lambda p: p),
            knowledge=knowledge if callable(knowledge) else _const(knowledge),
            shared=shared if callable(shared) else _const(shared),
            labels=labels,
            defaults=MappingProxyType(defaults),
            reference=reference,
            summary=summary,
        )
        if name in REGISTRY:
            raise ValueError(f"attack {name!r} registered twice")
        if entry.knowledge(defaults) not in KNOWLEDGE:
            raise ValueError(f"attack {name!r}: knowledge must be one of {KNOWLEDGE}")
        REGISTRY.add(name, entry)

        def public(ctx: AttackContext, **params: Any) -> Tensor:
            return _run(entry, ctx, _bind(entry, params))[0]

        public.__name__ = fn.__name__
        public.__qualname__ = fn.__qualname__
        public.__doc__ = fn.__doc__
        public.__module__ = fn.__module__
        public.__signature__ = sig.replace(return_annotation="Tensor")  # type: ignore[attr-defined]
        public.__wrapped_attack__ = fn  # type: ignore[attr-defined]
        return public

    return deco


def param_defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    """The parameters of ``fn(ctx, *, ...)`` after the context, with their defaults, in order."""
    return {
        p.name: p.default for p in list(inspect.signature(fn).parameters.values())[1:]
        if p.default is not inspect.Parameter.empty
    }


def bind_params(
    name: str,
    defaults: Mapping[str, Any],
    check: Callable[[dict[str, Any]], dict[str, Any]],
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """``params`` over ``defaults``, validated by ``check``; unknown names are an error."""
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise AttackError(
            f"{name}: unknown parameter(s) {unknown}; accepted: {', '.join(defaults) or '(none)'}"
        )
    return check({**defaults, **params})


def _bind(entry: Entry, params: Mapping[str, Any]) -> dict[str, Any]:
    return bind_params(entry.name, entry.defaults, entry.check, params)


def _raw(entry: Entry, ctx: AttackContext, params: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
    if not isinstance(ctx, AttackContext):
        raise AttackError(f"{entry.name}: expected an AttackContext, got {type(ctx).__name__}")
    raw = entry.fn(ctx, **params)
    return raw if isinstance(raw, tuple) else (raw, {})


def _run(entry: Entry, ctx: AttackContext, params: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
    if isinstance(ctx, AttackContext) and ctx.slots == 0:
        return ctx.honest.new_empty((0, ctx.d)), {}
    raw, info = _raw(entry, ctx, params)
    out = raw.expand(ctx.slots, -1) if raw.dim() == 1 else raw
    if out.shape != (ctx.slots, ctx.d):
        raise AssertionError(
            f"{entry.name}: produced shape {tuple(out.shape)}, expected {(ctx.slots, ctx.d)}"
        )
    # a fresh contiguous tensor: never a view of (or an alias to) the context's tensors
    fresh = torch.empty((ctx.slots, ctx.d), dtype=ctx.honest.dtype, device=ctx.honest.device)
    return fresh.copy_(out), info


# ----------------------------------------------------------------------------------------------
# bound attack


class NamedWithParams:
    """Value semantics of a configured attack (worker or server): equal when name and parameters
    are, hashable, shown as ``Kind('name', p=v)``."""

    __slots__ = ()
    name: str
    params: Mapping[str, Any]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({self.name!r}{', ' if args else ''}{args})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.name == other.name and dict(self.params) == dict(other.params)  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.name, tuple(self.params.items())))


class Attack(NamedWithParams):
    """An attack with its parameters bound; build it with :func:`get`.

    Attributes:
        name: registry name.
        params: every parameter, defaults included (read-only), for the run record.
        knowledge: ``"none"``, ``"local"``, ``"omniscient"`` or ``"defense-aware"``.
        shared: True when the formula gives one vector for all slots (ALIE, IPM, constant, ...);
            the engine may then call :meth:`vector` once and write it into every Byzantine copy.
        data_level: True for attacks on the data (label flipping); the engine computes the
            Byzantine slots' ``own`` gradients on :meth:`transform_labels` labels and the vector
            transform is the identity.
    """

    __slots__ = ("name", "params", "knowledge", "shared", "data_level", "_entry")

    def __init__(self, entry: Entry, params: Mapping[str, Any]) -> None:
        bound = _bind(entry, params)
        self._entry = entry
        self.name = entry.name
        self.params: Mapping[str, Any] = MappingProxyType(bound)
        self.knowledge: Knowledge = entry.knowledge(bound)  # type: ignore[assignment]
        self.shared: bool = bool(entry.shared(bound))
        self.data_level: bool = entry.data_level

    def __reduce__(self) -> tuple[Any, ...]:
        # picklable (the distributed runtime ships it to worker processes): rebuilt by name
        return (_rebuild, (self.name, dict(self.params)))

    def run(self, ctx: AttackContext, *, collude: bool = False) -> tuple[Tensor, dict[str, Any]]:
        """Like :meth:`__call__`, and also return the resolved values (z, tau, gamma, ...)."""
        if collude and not self.shared:
            one, info = self._one(ctx)
            return one.expand(ctx.slots, -1).clone(), info
        return _run(self._entry, ctx, dict(self.params))

    def __call__(self, ctx: AttackContext, *, collude: bool = False) -> Tensor:
        """The ``(ctx.slots, d)`` Byzantine vectors, one per slot.

        ``collude=True`` makes a per-slot attack (gaussian, sign flip of ``own``, reversed) agree
        across slots: the vector it computes for the first slot goes to every slot (one gaussian
        draw, the first slot's flipped gradient). Shared attacks are unaffected.
        """
        return self.run(ctx, collude=collude)[0]

    def vector(self, ctx: AttackContext) -> Tensor:
        """The one ``(d,)`` vector every colluding slot sends (the first slot's, if per-slot)."""
        if not self.shared:
            return self._one(ctx)[0][0]
        raw, _ = _raw(self._entry, ctx, dict(self.params))
        if raw.dim() != 1:
            raise AssertionError(f"{self.name}: declared shared but produced {tuple(raw.shape)}")
        return raw.to(dtype=ctx.honest.dtype, device=ctx.honest.device).clone()

    def _one(self, ctx: AttackContext) -> tuple[Tensor, dict[str, Any]]:
        own = None if ctx.own is None else ctx.own[:1]
        one = dataclasses.replace(ctx, own=own, slots=1)
        return _run(self._entry, one, dict(self.params))

    def transform_labels(self, y: Tensor, num_classes: int) -> Tensor:
        """Labels the Byzantine slots train on (data-level attacks only: the attack's own
        ``labels`` transform, given the bound parameters)."""
        labels = self._entry.labels
        if labels is None:
            raise AttackError(
                f"{self.name}: transform_labels is only defined for data-level attacks "
                f"({', '.join(n for n, e in REGISTRY.items() if e.data_level)})"
            )
        return labels(y, num_classes, **self.params)


def _rebuild(name: str, params: dict[str, Any]) -> Attack:
    return get(name, **params)


def get(name: str, **params: Any) -> Attack:
    """Return the attack ``name`` with ``params`` bound, e.g. ``get("ipm", epsilon=0.5)``."""
    if not isinstance(name, str) or name.strip().lower() not in REGISTRY:
        raise AttackError(f"unknown attack {name!r}; available: {', '.join(names())}")
    return Attack(REGISTRY[name.strip().lower()], params)


def names() -> list[str]:
    """Registered attack names, sorted."""
    return sorted(REGISTRY)


def describe() -> list[tuple[str, str, str, str, str]]:
    """``(name, knowledge, summary, output, defaults)`` rows for ``byzantium list attacks``.

    ``output`` is ``"shared"`` (one vector for all slots), ``"per-slot"`` or ``"data"``; both it and
    ``knowledge`` are given at the default parameters.
    """
    rows = []
    for name in names():
        e = REGISTRY[name]
        d = dict(e.defaults)
        out = "data" if e.data_level else ("shared" if e.shared(d) else "per-slot")
        defaults = ", ".join(f"{k}={v}" for k, v in d.items())
        rows.append((name, e.knowledge(d), e.summary, out, defaults))
    return rows


# ----------------------------------------------------------------------------------------------
# parameter checks shared by the attack modules


def real(name: str, param: str, v: Any, *, positive: bool = False) -> float:
    """``v`` as a finite float (``> 0`` if ``positive``), else :class:`AttackError`."""
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if ok and positive:
        ok = v > 0
    if not ok:
        what = "a finite number > 0" if positive else "a finite number"
        raise AttackError(f"{name}: {param} must be {what}, got {param}={v!r}")
    return float(v)


def integer(name: str, param: str, v: Any, *, minimum: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or (minimum is not None and v < minimum):
        what = "an int" + (f" >= {minimum}" if minimum is not None else "")
        raise AttackError(f"{name}: {param} must be {what}, got {param}={v!r}")
    return int(v)


def choice(name: str, param: str, v: Any, allowed: tuple[str, ...]) -> str:
    key = v.strip().lower() if isinstance(v, str) else v
    if key not in allowed:
        raise AttackError(f"{name}: {param} must be one of {list(allowed)}, got {param}={v!r}")
    return key


def sign(name: str, v: Any) -> str:
    """``"+"``/``"-"``; also accepts ``+1``/``-1`` (YAML writes a bare ``-`` as a list)."""
    if v in (1, "+", "+1", "plus") and not isinstance(v, bool):
        return "+"
    if v in (-1, "-", "-1", "minus") and not isinstance(v, bool):
        return "-"
    raise AttackError(f"{name}: sign must be '+' or '-' (or +1/-1), got sign={v!r}")
