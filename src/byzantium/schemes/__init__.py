"""The systems, each a composition of an assignment, a decoder and an aggregator.

:func:`build_scheme` turns a :class:`~byzantium.config.SchemeConfig` into a scheme object; the
parts come from :mod:`byzantium.assignments`, :mod:`byzantium.decoding` and
:mod:`byzantium.aggregators`.
"""

from __future__ import annotations

from typing import Any

from ..assignments import AssignmentError, baseline, mols, prime_power, ramanujan, repetition
from ..config import ConfigError, RunConfig, SchemeConfig
from .base import Scheme, StepInfo, StepView
from .cyclic import CyclicScheme
from .dstar import DStarScheme
from .vote import VoteScheme

__all__ = [
    "Scheme",
    "StepInfo",
    "StepView",
    "VoteScheme",
    "CyclicScheme",
    "DStarScheme",
    "build_scheme",
    "describe_schemes",
]

_PARTS = {
    "vanilla": "baseline assignment, no decoding, mean",
    "robust": "baseline assignment, no decoding, any rule (scheme.aggregator)",
    "draco_repetition": "repetition groups r = 2s+1, majority vote per group, mean (exact)",
    "draco_cyclic": "cyclic code r = 2s+1, locate adversaries + exact sum",
    "detox": "repetition groups of r, majority vote per group, hierarchical robust rule",
    "byzshield": "MOLS / Ramanujan assignment, majority vote per file, robust rule",
    "dstar": "first k arrivals, ensemble-median deviation filter, mean of survivors",
    "byzsgd": "n_ps replicated servers (f_ps Byzantine): MDA at servers, CwMed at workers, DMC",
}


def describe_schemes() -> list[tuple[str, str]]:
    return list(_PARTS.items())


def _divisor_hint(K: int) -> str:
    odd = [r for r in range(3, K + 1, 2) if K % r == 0]
    return ", ".join(map(str, odd)) or "none"


def build_scheme(sc: SchemeConfig, cfg: RunConfig, *, q: int) -> Any:
    """Build the scheme named by ``sc`` for ``cfg.workers`` workers and ``q`` Byzantine ones.

    Parameter errors name the field and what is allowed, e.g. a DETOX group size that does not
    divide the number of workers.
    """
    K = cfg.workers
    name = sc.display
    try:
        return _build(sc, cfg, K, q, name)
    except AssignmentError as e:
        raise ConfigError(f"scheme {name!r}: {e}") from None


def _build(sc: SchemeConfig, cfg: RunConfig, K: int, q: int, name: str) -> Any:
    vote_kw = dict(vote_rtol=sc.vote_rtol, on_no_majority=sc.on_no_majority)
    agg_kw = dict(aggregator_params=sc.aggregator_params, f=sc.f)
    if sc.name == "vanilla":
        if sc.aggregator not in (None, "mean"):
            raise ConfigError(
                f"scheme {name!r}: vanilla averages (aggregator 'mean'); use name: robust for "
                f"aggregator {sc.aggregator!r}"
            )
        return VoteScheme(name, baseline(K), q=q, aggregator="mean", f=0, **vote_kw)
    if sc.name == "robust":
        return VoteScheme(name, baseline(K), q=q, aggregator=sc.aggregator or "median",
                          **agg_kw, **vote_kw)
    if sc.name == "draco_repetition":
        s = sc.s if sc.s is not None else ((sc.r - 1) // 2 if sc.r else max(q, 1))
        r = 2 * s + 1
        if sc.r is not None and sc.r != r:
            raise ConfigError(f"scheme {name!r}: r must equal 2s+1 = {r}, got r={sc.r}")
        if K % r:
            raise ConfigError(
                f"scheme {name!r}: DRACO repetition needs r = 2s+1 = {r} to divide workers={K}; "
                f"odd divisors of {K}: {_divisor_hint(K)}"
            )
        return VoteScheme(name, repetition(K, r), q=q, aggregator="mean", f=0, **vote_kw)
    if sc.name == "draco_cyclic":
        s = sc.s if sc.s is not None else max(q, 1)
        return CyclicScheme(name, K, s, q=q)
    if sc.name == "detox":
        r = sc.r or 3
        if K % r:
            raise ConfigError(
                f"scheme {name!r}: DETOX needs the group size r={r} to divide workers={K}; "
                f"odd divisors of {K}: {_divisor_hint(K)}"
            )
        return VoteScheme(name, repetition(K, r), q=q, aggregator=sc.aggregator or "median",
                          **agg_kw, **vote_kw)
    if sc.name == "byzshield":
        r = sc.r or 3
        if sc.assignment == "mols":
            if K % r:
                raise ConfigError(
                    f"scheme {name!r}: MOLS needs K = r*l workers; r={r} does not divide workers={K}"
                )
            l = K // r
            if prime_power(l) is None:
                raise ConfigError(
                    f"scheme {name!r}: MOLS needs l = K/r a prime power, got l={K}/{r}={l}"
                )
            a = mols(l, r)
        else:
            if sc.m is not None and sc.s is not None:
                a = ramanujan(sc.m, sc.s)
            elif K % r == 0:
                a = ramanujan(r, K // r)  # Case 1: K = m*s, r = m
            else:
                raise ConfigError(
                    f"scheme {name!r}: Ramanujan needs scheme.m and scheme.s, or r dividing "
                    f"workers={K} (Case 1: m=r, s=K/r)"
                )
        return VoteScheme(name, a, q=q, aggregator=sc.aggregator or "median", **agg_kw, **vote_kw)
    if sc.name == "dstar":
        f = q if sc.f == "auto" else int(sc.f)
        k = sc.k or cfg.stragglers.k or K - f
        return DStarScheme(name, K, q=q, k=k, f=f, lam=sc.lam, variant=sc.variant)
    if sc.name == "byzsgd":
        raise ConfigError(
            f"scheme {name!r}: ByzSGD has no single server; it runs through "
            "byzantium.training.byzsgd_run (byzantium train/compare dispatch to it)"
        )
    raise ConfigError(f"scheme {name!r}: unknown scheme {sc.name!r}")
