"""ByzShield (Konstantinidis & Ramamoorthy, MLSys 2021): files assigned by bipartite expander
graphs (mutually orthogonal Latin squares, Ramanujan bigraphs), a majority vote per file, then a
robust rule over the file votes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..assignments import mols, prime_power, ramanujan
from ..typed import ConfigError
from .registry import AggregatorFields, SchemeContext, VoteFields, scheme
from .vote import VoteScheme

__all__ = ["ByzShieldParams"]


@dataclass
class ByzShieldParams(AggregatorFields, VoteFields):
    aggregator: str | None = "median"
    assignment: Literal["mols", "ramanujan"] = "mols"
    r: int = 3
    """Replication: copies of each file (MOLS: K = r*l; Ramanujan Case 1: m = r)."""
    m: int | None = None
    """Ramanujan: the bigraph's m (with s)."""
    s: int | None = None
    """Ramanujan: the bigraph's s (with m)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.r < 1:
            raise ConfigError(f"r: must be >= 1, got {self.r}")


@scheme("byzshield", params=ByzShieldParams,
        summary="MOLS / Ramanujan assignment, majority vote per file, robust rule")
def build_byzshield(label: str, p: ByzShieldParams, ctx: SchemeContext) -> VoteScheme:
    K, r = ctx.workers, p.r
    if p.assignment == "mols":
        if K % r:
            raise ConfigError(
                f"scheme {label!r}: MOLS needs K = r*l workers; r={r} does not divide workers={K}"
            )
        l = K // r
        if prime_power(l) is None:
            raise ConfigError(f"scheme {label!r}: MOLS needs l = K/r a prime power, got l={K}/{r}={l}")
        a = mols(l, r)
    elif p.m is not None and p.s is not None:
        a = ramanujan(p.m, p.s)
    elif K % r == 0:
        a = ramanujan(r, K // r)  # Case 1: K = m*s, r = m
    else:
        raise ConfigError(
            f"scheme {label!r}: Ramanujan needs scheme.m and scheme.s, or r dividing "
            f"workers={K} (Case 1: m=r, s=K/r)"
        )
    return VoteScheme(label, a, q=ctx.q, aggregator=p.aggregator or "median",
                      aggregator_params=p.aggregator_params, f=p.f, vote_rtol=p.vote_rtol,
                      on_no_majority=p.on_no_majority)
