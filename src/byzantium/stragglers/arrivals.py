"""Byzantine timing, server arrival policies and :func:`arrivals`, which cuts one step's arrivals.

Late messages are discarded, never applied at a later step (that would be asynchronous SGD with
staleness, a different algorithm; dSTAR spec P4).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import Tensor

from ..registry import Registry
from .checks import StragglerError, bounded, check_fields

__all__ = [
    "BYZANTINE_TIMINGS",
    "apply_byzantine_timing",
    "ServerPolicy",
    "SERVER_POLICIES",
    "WaitAll",
    "FirstK",
    "Deadline",
    "wait_all",
    "first_k",
    "deadline",
    "make_policy",
    "ArrivalResult",
    "arrivals",
]


def _check_times(where: str, times: Any) -> Tensor:
    t = torch.as_tensor(times, dtype=torch.float64).detach().cpu()
    if t.dim() != 1 or t.shape[0] < 1:
        raise StragglerError(f"{where}: times must be a non-empty (K,) tensor, got shape {tuple(t.shape)}")
    if bool(torch.isnan(t).any()) or bool((t < 0).any()):
        raise StragglerError(f"{where}: times must be >= 0 and not NaN, got {t.tolist()}")
    return t


# --------------------------------------------------------------------------------------------
# Byzantine timing

BYZANTINE_TIMINGS = ("rushing", "like_honest", "slowest")


def apply_byzantine_timing(times: Tensor, byzantine: Any, policy: str) -> Tensor:
    """Return a copy of ``times`` with the Byzantine workers' arrival times set by ``policy``.

    * ``rushing``: Byzantine messages arrive at time 0, so they are first (ties among them and
      with zero-latency honest workers are broken by worker id). The worst case; the default
      for robustness results (dSTAR spec §3.3).
    * ``like_honest``: unchanged (Byzantine workers draw from the same model as the others).
    * ``slowest``: just after the slowest honest worker, so they are last.

    ``byzantine`` is a bool mask ``(K,)`` or a sequence of worker ids.
    """
    where = "apply_byzantine_timing"
    if policy not in BYZANTINE_TIMINGS:
        raise StragglerError(
            f"{where}: unknown policy {policy!r}; allowed: {list(BYZANTINE_TIMINGS)}"
        )
    t = _check_times(where, times).clone()
    mask = _as_mask(where, byzantine, t.shape[0])
    if policy == "like_honest" or not bool(mask.any()):
        return t
    if policy == "rushing":
        t[mask] = 0.0
    else:
        honest = t[~mask]
        top = honest.max() if honest.numel() else t.max()
        t[mask] = torch.nextafter(top, torch.tensor(math.inf, dtype=t.dtype))
    return t


def _as_mask(where: str, ids: Any, num_workers: int) -> Tensor:
    if isinstance(ids, Tensor) and ids.dtype == torch.bool:
        if ids.shape != (num_workers,):
            raise StragglerError(
                f"{where}: byzantine mask must have shape ({num_workers},), got {tuple(ids.shape)}"
            )
        return ids.cpu()
    idx = torch.as_tensor(list(ids) if not isinstance(ids, Tensor) else ids, dtype=torch.long)
    idx = idx.flatten().cpu()
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= num_workers):
        raise StragglerError(
            f"{where}: byzantine ids must be in [0, {num_workers - 1}], got {idx.tolist()}"
        )
    mask = torch.zeros(num_workers, dtype=torch.bool)
    mask[idx] = True
    return mask


# --------------------------------------------------------------------------------------------
# server policies

SERVER_POLICIES: Registry[type] = Registry("server policy", error=StragglerError)
"""Server-policy classes by name (their ``name`` field)."""


def _policy(cls: type) -> type:
    return SERVER_POLICIES.add(cls.name, cls)


@_policy
@dataclass(frozen=True)
class WaitAll:
    """Wait for every worker (fully synchronous)."""

    name: str = field(default="wait_all", init=False)


@_policy
@dataclass(frozen=True)
class FirstK:
    """Proceed after the first ``k`` arrivals; the rest are late and discarded."""

    k: int = bounded(kind=int, ge=1)
    name: str = field(default="first_k", init=False)

    def __post_init__(self) -> None:
        check_fields(self)


@_policy
@dataclass(frozen=True)
class Deadline:
    """Accept what arrives by time ``t`` (inclusive); if nothing has, wait for the first message."""

    t: float = bounded(ge=0)
    name: str = field(default="deadline", init=False)

    def __post_init__(self) -> None:
        check_fields(self)


ServerPolicy = WaitAll | FirstK | Deadline


def wait_all() -> WaitAll:
    """The fully synchronous server: wait for every worker."""
    return WaitAll()


def first_k(k: int) -> FirstK:
    """Proceed after the first ``k`` arrivals (dSTAR)."""
    return FirstK(k)


def deadline(t: float) -> Deadline:
    """Accept every message arriving by time ``t``, and at least one."""
    return Deadline(t)


def make_policy(spec: Mapping[str, Any] | str | ServerPolicy | None) -> ServerPolicy:
    """``"wait_all"``, ``{"policy": "first_k", "k": 10}``, ``{"policy": "deadline", "t": 2.5}``,
    an existing policy, or ``None`` (wait for all)."""
    if spec is None:
        return WaitAll()
    if isinstance(spec, (WaitAll, FirstK, Deadline)):
        return spec
    if isinstance(spec, str):
        spec = {"policy": spec}
    if not isinstance(spec, Mapping):
        raise StragglerError(
            f"make_policy: spec must be a name or a mapping, got {type(spec).__name__}"
        )
    name = spec.get("policy")
    if not isinstance(name, str) or name not in SERVER_POLICIES:
        raise StragglerError(SERVER_POLICIES.unknown(name, "make_policy"))
    cls = SERVER_POLICIES[name]
    allowed = [f.name for f in dataclasses.fields(cls) if f.init]
    params = {k: v for k, v in spec.items() if k != "policy"}
    if set(params) != set(allowed):
        raise StragglerError(
            f"make_policy: policy {name!r} takes exactly the parameters {allowed}, "
            f"got {sorted(params)}"
        )
    return cls(**params)


# --------------------------------------------------------------------------------------------
# arrivals


@dataclass(frozen=True)
class ArrivalResult:
    """Which messages the server uses in one step.

    ``order``: every worker id sorted by arrival time, ties broken by worker id.
    ``received``: ``(K,)`` bool, the messages accepted before the cut.
    ``step_time``: how long the server waited (see :func:`arrivals`).
    ``late``: ids of the discarded messages, in arrival order (never applied later).
    """

    order: Tensor
    received: Tensor
    step_time: float
    late: Tensor

    @property
    def accepted(self) -> Tensor:
        """Ids of the accepted messages in arrival order (the first ``received.sum()`` of order)."""
        return self.order[: int(self.received.sum())]


def arrivals(times: Tensor, policy: ServerPolicy) -> ArrivalResult:
    """Apply a server policy to per-worker arrival times ``(K,)``.

    ``+inf`` marks a worker that never arrives (crashed). Sorting is by ``(time, worker id)``, so
    equal times are broken deterministically in favour of the smaller id.

    * ``wait_all``: accept all; ``step_time`` = the last arrival. Error if some worker never
      arrives (the server would hang).
    * ``first_k(k)``: accept the ``k`` earliest; ``step_time`` = the ``k``-th arrival. Error if
      ``k > K`` or fewer than ``k`` workers arrive.
    * ``deadline(t)``: accept every message with time ``<= t``; if there is none, accept the first
      arrival. ``step_time`` = ``t`` (the server waits until the deadline) unless every worker has
      arrived earlier (then the last arrival), or nothing arrived by ``t`` (then the first arrival).
    """
    where = "arrivals"
    t = _check_times(where, times)
    K = t.shape[0]
    # stable sort by time keeps id order among equal times: deterministic tie-break by worker id
    order = torch.sort(t, stable=True).indices
    st = t[order]
    policy = make_policy(policy)
    if isinstance(policy, WaitAll):
        if not bool(torch.isfinite(st[-1])):
            raise StragglerError(
                f"{where}: wait_all: {int((~torch.isfinite(t)).sum())} worker(s) never arrive "
                "(time inf); the server would wait forever"
            )
        m, step_time = K, float(st[-1])
    elif isinstance(policy, FirstK):
        if policy.k > K:
            raise StragglerError(f"{where}: first_k: k must be <= K, got k={policy.k}, K={K}")
        if not bool(torch.isfinite(st[policy.k - 1])):
            raise StragglerError(
                f"{where}: first_k: only {int(torch.isfinite(t).sum())} worker(s) arrive, "
                f"fewer than k={policy.k}"
            )
        m, step_time = policy.k, float(st[policy.k - 1])
    elif isinstance(policy, Deadline):
        m = int((st <= policy.t).sum())
        if m == 0:
            if not bool(torch.isfinite(st[0])):
                raise StragglerError(f"{where}: deadline: no worker ever arrives")
            m, step_time = 1, float(st[0])
        elif m == K:
            step_time = float(st[-1])
        else:
            step_time = float(policy.t)
    else:  # pragma: no cover - make_policy only returns the three kinds
        raise StragglerError(f"{where}: unknown policy {policy!r}")
    received = torch.zeros(K, dtype=torch.bool)
    received[order[:m]] = True
    return ArrivalResult(order=order, received=received, step_time=step_time, late=order[m:])
