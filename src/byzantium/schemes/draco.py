"""DRACO (Chen et al., ICML 2018): every file computed by r = 2s+1 workers; the repetition
code takes a majority vote per group and averages (exact), the cyclic code sends one linear
combination per worker and decodes the exact sum with up to s adversaries."""

from __future__ import annotations

from dataclasses import dataclass

from ..assignments import repetition
from ..typed import ConfigError
from .cyclic import CyclicScheme
from .registry import SchemeContext, VoteFields, divisor_hint, scheme
from .vote import VoteScheme

__all__ = ["DracoRepetitionParams", "DracoCyclicParams"]


def _check_s(s: int | None) -> None:
    if s is not None and s < 0:
        raise ConfigError(f"s: must be >= 0, got {s}")


@dataclass
class DracoRepetitionParams(VoteFields):
    s: int | None = None
    """Adversaries tolerated; default: the run's q (at least 1). r = 2s+1."""
    r: int | None = None
    """Optional: must equal 2s+1 (or gives s = (r-1)/2 when s is unset)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_s(self.s)
        if self.r is not None and self.r < 1:
            raise ConfigError(f"r: must be >= 1, got {self.r}")


@scheme("draco_repetition", params=DracoRepetitionParams,
        summary="repetition groups r = 2s+1, majority vote per group, mean (exact)")
def build_draco_repetition(label: str, p: DracoRepetitionParams, ctx: SchemeContext) -> VoteScheme:
    K = ctx.workers
    s = p.s if p.s is not None else ((p.r - 1) // 2 if p.r else max(ctx.q, 1))
    r = 2 * s + 1
    if p.r is not None and p.r != r:
        raise ConfigError(f"scheme {label!r}: r must equal 2s+1 = {r}, got r={p.r}")
    if K % r:
        raise ConfigError(
            f"scheme {label!r}: DRACO repetition needs r = 2s+1 = {r} to divide workers={K}; "
            f"odd divisors of {K}: {divisor_hint(K)}"
        )
    return VoteScheme(label, repetition(K, r), q=ctx.q, aggregator="mean", f=0,
                      vote_rtol=p.vote_rtol, on_no_majority=p.on_no_majority)


@dataclass
class DracoCyclicParams:
    s: int | None = None
    """Adversaries the code locates and corrects; default: the run's q (at least 1)."""

    def __post_init__(self) -> None:
        _check_s(self.s)


@scheme("draco_cyclic", params=DracoCyclicParams,
        summary="cyclic code r = 2s+1, locate adversaries + exact sum")
def build_draco_cyclic(label: str, p: DracoCyclicParams, ctx: SchemeContext) -> CyclicScheme:
    s = p.s if p.s is not None else max(ctx.q, 1)
    return CyclicScheme(label, ctx.workers, s, q=ctx.q)
