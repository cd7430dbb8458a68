"""Vanilla averaging and a plain robust rule: one file per worker, no decoding."""

from __future__ import annotations

from dataclasses import dataclass

from ..assignments import baseline
from ..typed import ConfigError
from .registry import AggregatorFields, SchemeContext, scheme
from .vote import VoteScheme

__all__ = ["VanillaParams", "RobustParams"]


@dataclass
class VanillaParams:
    aggregator: str | None = None
    """Only ``mean`` (or unset): a robust rule is the ``robust`` scheme."""

    def __post_init__(self) -> None:
        if self.aggregator not in (None, "mean"):
            raise ConfigError(
                f"aggregator: vanilla averages (aggregator 'mean'); use name: robust for "
                f"aggregator {self.aggregator!r}"
            )


@scheme("vanilla", params=VanillaParams, summary="baseline assignment, no decoding, mean")
def build_vanilla(label: str, p: VanillaParams, ctx: SchemeContext) -> VoteScheme:
    return VoteScheme(label, baseline(ctx.workers), q=ctx.q, aggregator="mean", f=0)


@dataclass
class RobustParams(AggregatorFields):
    aggregator: str | None = "median"


@scheme("robust", params=RobustParams,
        summary="baseline assignment, no decoding, any rule (scheme.aggregator)")
def build_robust(label: str, p: RobustParams, ctx: SchemeContext) -> VoteScheme:
    return VoteScheme(label, baseline(ctx.workers), q=ctx.q, aggregator=p.aggregator or "median",
                      aggregator_params=p.aggregator_params, f=p.f)
