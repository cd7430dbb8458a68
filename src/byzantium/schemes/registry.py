"""The scheme registry: each system registers a builder and its params dataclass.

A scheme's entry in a config is ``{name, label, q}`` plus that scheme's own fields, validated by
its params dataclass (errors name ``scheme.<field>``, the value and what is allowed). A builder
turns the params and the run's :class:`SchemeContext` into the scheme object both runtimes use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from ..assignments import AssignmentError
from ..registry import Registry
from ..typed import ConfigError

__all__ = [
    "SCHEMES",
    "SchemeContext",
    "SchemeEntry",
    "scheme",
    "build_scheme",
    "topology",
    "AggregatorFields",
    "VoteFields",
    "divisor_hint",
]


@dataclass(frozen=True)
class SchemeContext:
    """What a builder needs from the run besides the scheme's own params."""

    workers: int
    q: int
    first_k: int | None = None
    """The run's ``stragglers.k`` (``first_k`` policy), or None."""


@dataclass(frozen=True)
class SchemeEntry:
    name: str
    build: Callable[[str, Any, SchemeContext], Any]
    """``build(label, params, ctx) -> scheme``."""
    summary: str
    topology: Literal["star", "replicated"] = "star"
    """``star``: one trusted server and K workers (the scheme object decodes and aggregates);
    ``replicated``: replicated servers, some Byzantine (ByzSGD), run by their own runtime."""


SCHEMES: Registry[SchemeEntry] = Registry("scheme")


def scheme(name: str, *, params: type, summary: str,
           topology: Literal["star", "replicated"] = "star") -> Callable[[Callable], Callable]:
    """Register ``build(label, params, ctx)`` as scheme ``name`` with its params dataclass."""

    def deco(build: Callable) -> Callable:
        SCHEMES.add(name, SchemeEntry(name, build, summary, topology), params=params)
        return build

    return deco


def topology(name: str) -> str:
    """The topology of scheme ``name``: ``star`` or ``replicated`` (servers)."""
    return SCHEMES[name].topology


def build_scheme(name: str, label: str, params: Any, ctx: SchemeContext) -> Any:
    """The scheme object for ``name`` (errors name the scheme's label)."""
    try:
        return SCHEMES[name].build(label, params, ctx)
    except AssignmentError as e:
        raise ConfigError(f"scheme {label!r}: {e}") from None


# ---------------------------------------------------------------------------- shared fields


def _next_post_init(obj: Any, cls: type) -> None:
    """Run the next ``__post_init__`` in ``obj``'s MRO after ``cls`` (field groups combine)."""
    nxt = getattr(super(cls, obj), "__post_init__", None)
    if nxt is not None:
        nxt()


@dataclass
class AggregatorFields:
    """The robust rule after decoding: a spec for :func:`byzantium.aggregators.get`
    (``"median"``, ``"nnm+krum"``), its params, and the number ``f`` of Byzantine inputs it must
    tolerate: ``"auto"`` derives it from the placement (the worst-case number of distorted files
    for the assignment and q)."""

    aggregator: str | None = None
    aggregator_params: dict = field(default_factory=dict)
    f: int | str = "auto"

    def __post_init__(self) -> None:
        _next_post_init(self, AggregatorFields)
        if isinstance(self.f, str) and self.f != "auto":
            raise ConfigError(f"f: expected an integer >= 0 or 'auto', got {self.f!r}")
        if isinstance(self.f, int) and self.f < 0:
            raise ConfigError(f"f: must be >= 0, got {self.f}")


@dataclass
class VoteFields:
    """The majority vote per file: agreement within ``vote_rtol`` (relative to the copies'
    norms); a file without a majority is dropped or replaced by its copies' median."""

    vote_rtol: float = 1e-5
    on_no_majority: Literal["drop", "median"] = "drop"

    def __post_init__(self) -> None:
        _next_post_init(self, VoteFields)
        if not (self.vote_rtol >= 0 and math.isfinite(self.vote_rtol)):
            raise ConfigError(f"vote_rtol: must be a finite number >= 0, got {self.vote_rtol}")


def divisor_hint(K: int) -> str:
    """The odd divisors of ``K`` (group sizes that would divide it), for error messages."""
    odd = [r for r in range(3, K + 1, 2) if K % r == 0]
    return ", ".join(map(str, odd)) or "none"
