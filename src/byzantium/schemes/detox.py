"""DETOX (Rajput et al., NeurIPS 2019): groups of r workers share a file; a majority vote per
group, then a robust rule (median-of-means, multi-Krum, ...) over the group outputs."""

from __future__ import annotations

from dataclasses import dataclass

from ..assignments import repetition
from ..typed import ConfigError
from .registry import AggregatorFields, SchemeContext, VoteFields, divisor_hint, scheme
from .vote import VoteScheme

__all__ = ["DetoxParams"]


@dataclass
class DetoxParams(AggregatorFields, VoteFields):
    aggregator: str | None = "median"
    r: int = 3
    """Group size (odd), dividing the number of workers."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.r < 1:
            raise ConfigError(f"r: must be >= 1, got {self.r}")


@scheme("detox", params=DetoxParams,
        summary="repetition groups of r, majority vote per group, hierarchical robust rule")
def build_detox(label: str, p: DetoxParams, ctx: SchemeContext) -> VoteScheme:
    K = ctx.workers
    if K % p.r:
        raise ConfigError(
            f"scheme {label!r}: DETOX needs the group size r={p.r} to divide workers={K}; "
            f"odd divisors of {K}: {divisor_hint(K)}"
        )
    return VoteScheme(label, repetition(K, p.r), q=ctx.q, aggregator=p.aggregator or "median",
                      aggregator_params=p.aggregator_params, f=p.f, vote_rtol=p.vote_rtol,
                      on_no_majority=p.on_no_majority)
