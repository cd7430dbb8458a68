"""Stragglers: per-worker delay models, Byzantine timing, server arrival policies, a simulated clock.

A step in the simulated cluster takes the time the server waits for messages plus its own compute
time. This module turns a delay model into per-worker latencies ``tau (K,)`` (float64 seconds),
lets Byzantine workers choose when to arrive, and cuts the arrivals with a server policy
(wait for all, the first ``k``, or a deadline). Late messages are discarded, never applied at a
later step (that would be asynchronous SGD with staleness, a different algorithm; dSTAR spec P4).

Delay models (``tau_i`` for worker ``i`` at one step; ``c_i = base_time * load_i``, so a worker
that computes ``l`` files takes ``l`` times longer and redundancy is paid for in simulated time):

=======================  ========================================  ==============================
name                     latency                                   mean
=======================  ========================================  ==============================
``none``                 ``c_i``                                   ``c_i``
``exponential``          ``c_i * X``, ``X ~ Exp(rate)``            ``c_i / rate``
``shifted_exponential``  ``c_i * (1 + X)``, ``X ~ Exp(mu)``        ``c_i (1 + 1/mu)``
``pareto``               ``c_i * P``, ``P ~ Pareto(alpha, scale)`` ``c_i alpha scale/(alpha-1)``
``slow_set``             a base model, times ``factor`` for the     (base mean) x factor
                         listed workers; each step every worker is
                         also slowed by ``transient_factor`` with
                         probability ``transient_prob``
=======================  ========================================  ==============================

The shifted exponential is the model common in the straggler / coded-computing literature
(e.g. Lee et al., "Speeding up distributed machine learning using codes", 2018); the persistent
slow set and the Byzantine timing policies follow the dSTAR spec (shared/papers/dstar_byzsgd.md
§1.5). The dSTAR paper's own delay model is unknown, so all of this is configurable.

Every sampler draws a fixed number of values from the ``torch.Generator`` it is given (``K`` per
random component, whatever the parameters), on the CPU in float64, so a run is reproducible from
its seed and independent of the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor

__all__ = [
    "StragglerError",
    "DelayModel",
    "NoDelay",
    "ExponentialDelay",
    "ShiftedExponentialDelay",
    "ParetoDelay",
    "SlowSetDelay",
    "DELAY_MODELS",
    "make_delay_model",
    "BYZANTINE_TIMINGS",
    "apply_byzantine_timing",
    "ServerPolicy",
    "WaitAll",
    "FirstK",
    "Deadline",
    "wait_all",
    "first_k",
    "deadline",
    "make_policy",
    "ArrivalResult",
    "arrivals",
    "SimulatedClock",
]


class StragglerError(ValueError):
    """Bad parameter or input for a delay model, timing policy, server policy or the clock."""


# --------------------------------------------------------------------------------------------
# parameter checks


def _real(where: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise StragglerError(f"{where}: {name} must be a real number, got {name}={value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise StragglerError(f"{where}: {name} must be finite, got {name}={v}")
    return v


def _positive(where: str, name: str, value: Any) -> float:
    v = _real(where, name, value)
    if v <= 0:
        raise StragglerError(f"{where}: {name} must be > 0, got {name}={v}")
    return v


def _nonneg(where: str, name: str, value: Any) -> float:
    v = _real(where, name, value)
    if v < 0:
        raise StragglerError(f"{where}: {name} must be >= 0, got {name}={v}")
    return v


def _int(where: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise StragglerError(f"{where}: {name} must be an integer, got {name}={value!r}")
    return int(value)


def _base_times(where: str, base_time: float, num_workers: int, load: Any) -> Tensor:
    """``c_i = base_time * load_i`` as a float64 ``(K,)`` tensor (``load`` defaults to ones)."""
    num_workers = _int(where, "num_workers", num_workers)
    if num_workers < 1:
        raise StragglerError(f"{where}: num_workers must be >= 1, got num_workers={num_workers}")
    if load is None:
        return torch.full((num_workers,), base_time, dtype=torch.float64)
    lt = torch.as_tensor(load, dtype=torch.float64).detach().cpu()
    if lt.shape != (num_workers,):
        raise StragglerError(
            f"{where}: load must have shape ({num_workers},) (one entry per worker), "
            f"got shape {tuple(lt.shape)}"
        )
    if not bool(torch.isfinite(lt).all()) or bool((lt < 0).any()):
        raise StragglerError(f"{where}: load must be finite and >= 0, got {lt.tolist()}")
    return base_time * lt


def _check_step(where: str, step: int) -> None:
    step = _int(where, "step", step)
    if step < 0:
        raise StragglerError(f"{where}: step must be >= 0, got step={step}")


def _check_generator(where: str, generator: Any) -> None:
    if not isinstance(generator, torch.Generator):
        raise StragglerError(
            f"{where}: generator must be a torch.Generator, got {type(generator).__name__}"
        )
    if generator.device.type != "cpu":
        raise StragglerError(
            f"{where}: generator must live on the CPU (delays are sampled on the CPU), "
            f"got device {generator.device}"
        )


def _start(
    where: str, step: int, generator: Any, base_time: float, num_workers: int, load: Any
) -> Tensor:
    """The checks every delay model's ``sample`` starts with; returns the base times ``c_i``."""
    _check_step(where, step)
    _check_generator(where, generator)
    return _base_times(where, base_time, num_workers, load)


def _exp(n: int, rate: float, generator: torch.Generator) -> Tensor:
    return torch.empty(n, dtype=torch.float64).exponential_(rate, generator=generator)


# --------------------------------------------------------------------------------------------
# delay models


@runtime_checkable
class DelayModel(Protocol):
    """Per-worker latency of one step: ``sample(step, generator, num_workers, load) -> (K,)``.

    ``load`` (``(K,)``, default ones) multiplies each worker's base compute time. The result is a
    float64 CPU tensor of seconds, ``>= 0``. Implementations are frozen dataclasses and pure
    functions of their arguments (randomness only from ``generator``). ``step`` is part of the
    signature so that time-varying models fit; the models here are stationary.
    """

    name: str

    def sample(
        self, step: int, generator: torch.Generator, num_workers: int, load: Any = None
    ) -> Tensor: ...

    def to_spec(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class NoDelay:
    """Deterministic latency ``tau_i = base_time * load_i`` (no stragglers)."""

    base_time: float = 1.0
    name: str = field(default="none", init=False)

    def __post_init__(self) -> None:
        _nonneg("none", "base_time", self.base_time)

    def sample(
        self, step: int, generator: torch.Generator, num_workers: int, load: Any = None
    ) -> Tensor:
        return _start(self.name, step, generator, float(self.base_time), num_workers, load)

    def mean(self) -> float:
        """Expected latency per unit of load."""
        return float(self.base_time)

    def to_spec(self) -> dict[str, Any]:
        return {"model": self.name, "base_time": self.base_time}


@dataclass(frozen=True)
class ExponentialDelay:
    """``tau_i = c_i * X_i`` with ``X_i ~ Exp(rate)`` i.i.d. (mean ``c_i / rate``)."""

    rate: float = 1.0
    base_time: float = 1.0
    name: str = field(default="exponential", init=False)

    def __post_init__(self) -> None:
        _positive(self.name, "rate", self.rate)
        _nonneg(self.name, "base_time", self.base_time)

    def sample(
        self, step: int, generator: torch.Generator, num_workers: int, load: Any = None
    ) -> Tensor:
        c = _start(self.name, step, generator, float(self.base_time), num_workers, load)
        return c * _exp(c.shape[0], float(self.rate), generator)

    def mean(self) -> float:
        return float(self.base_time) / float(self.rate)

    def to_spec(self) -> dict[str, Any]:
        return {"model": self.name, "rate": self.rate, "base_time": self.base_time}


@dataclass(frozen=True)
class ShiftedExponentialDelay:
    """``tau_i = c_i * (1 + X_i)`` with ``X_i ~ Exp(mu)`` (dSTAR spec §1.5; mean ``c_i (1 + 1/mu)``).

    Every worker needs at least its base time ``c_i``; the exponential tail models random
    slowdowns (the standard model of the coded-computing literature).
    """

    mu: float = 1.0
    base_time: float = 1.0
    name: str = field(default="shifted_exponential", init=False)

    def __post_init__(self) -> None:
        _positive(self.name, "mu", self.mu)
        _nonneg(self.name, "base_time", self.base_time)

    def sample(
        self, step: int, generator: torch.Generator, num_workers: int, load: Any = None
    ) -> Tensor:
        c = _start(self.name, step, generator, float(self.base_time), num_workers, load)
        return c * (1.0 + _exp(c.shape[0], float(self.mu), generator))

    def mean(self) -> float:
        return float(self.base_time) * (1.0 + 1.0 / float(self.mu))

    def to_spec(self) -> dict[str, Any]:
        return {"model": self.name, "mu": self.mu, "base_time": self.base_time}


@dataclass(frozen=True)
class ParetoDelay:
    """``tau_i = c_i * P_i`` with ``P_i ~ Pareto(alpha, scale)``: ``P(P > x) = (scale/x)^alpha``
    for ``x >= scale``. Heavy tail; the mean ``alpha scale / (alpha - 1)`` is finite only for
    ``alpha > 1`` and the variance only for ``alpha > 2``. Sampled by inversion,
    ``P = scale * U^(-1/alpha)`` with ``U`` uniform on ``(0, 1]``.
    """

    alpha: float = 2.0
    scale: float = 1.0
    base_time: float = 1.0
    name: str = field(default="pareto", init=False)

    def __post_init__(self) -> None:
        _positive(self.name, "alpha", self.alpha)
        _positive(self.name, "scale", self.scale)
        _nonneg(self.name, "base_time", self.base_time)

    def sample(
        self, step: int, generator: torch.Generator, num_workers: int, load: Any = None
    ) -> Tensor:
        c = _start(self.name, step, generator, float(self.base_time), num_workers, load)
        u = 1.0 - torch.rand(c.shape[0], dtype=torch.float64, generator=generator)  # (0, 1]
        return c * float(self.scale) * u.pow(-1.0 / float(self.alpha))

    def mean(self) -> float:
        a = float(self.alpha)
        if a <= 1:
            return math.inf
        return float(self.base_time) * a * float(self.scale) / (a - 1)

    def to_spec(self) -> dict[str, Any]:
        return {"model": self.name, "alpha": self.alpha, "scale": self.scale,
                "base_time": self.base_time}


@dataclass(frozen=True)
class SlowSetDelay:
    """A base model, with a fixed set of workers slowed by ``factor`` (persistent stragglers), and
    optionally every worker slowed by ``transient_factor`` with probability ``transient_prob`` at
    each step, independently (transient stragglers; dSTAR spec §1.5).

    ``tau_i = base_i * (factor if i in workers else 1) * (transient_factor if U_i < p else 1)``.
    When ``transient_prob > 0`` exactly ``K`` uniforms are drawn after the base model's draws.
    """

    workers: tuple[int, ...] = ()
    factor: float = 2.0
    base: Any = field(default_factory=NoDelay)
    transient_prob: float = 0.0
    transient_factor: float = 1.0
    name: str = field(default="slow_set", init=False)

    def __post_init__(self) -> None:
        where = self.name
        if isinstance(self.workers, (str, bytes)) or not isinstance(self.workers, Sequence):
            raise StragglerError(
                f"{where}: workers must be a list of worker ids, got {self.workers!r}"
            )
        ids = tuple(_int(where, "workers[]", w) for w in self.workers)
        if any(w < 0 for w in ids):
            raise StragglerError(f"{where}: worker ids must be >= 0, got workers={list(ids)}")
        if len(set(ids)) != len(ids):
            raise StragglerError(f"{where}: worker ids must be distinct, got workers={list(ids)}")
        object.__setattr__(self, "workers", tuple(sorted(ids)))
        if _real(where, "factor", self.factor) < 1:
            raise StragglerError(f"{where}: factor must be >= 1 (a slowdown), got factor={self.factor}")
        p = _real(where, "transient_prob", self.transient_prob)
        if not 0 <= p <= 1:
            raise StragglerError(
                f"{where}: transient_prob must be in [0, 1], got transient_prob={p}"
            )
        if _real(where, "transient_factor", self.transient_factor) < 1:
            raise StragglerError(
                f"{where}: transient_factor must be >= 1 (a slowdown), "
                f"got transient_factor={self.transient_factor}"
            )
        if not isinstance(self.base, DelayModel):
            raise StragglerError(
                f"{where}: base must be a delay model (see make_delay_model), got {self.base!r}"
            )
        if isinstance(self.base, SlowSetDelay):
            raise StragglerError(f"{where}: base must not itself be a slow_set model")

    def check_workers(self, num_workers: int) -> None:
        """Raise unless every slow worker id is ``< num_workers``."""
        bad = [w for w in self.workers if w >= num_workers]
        if bad:
            raise StragglerError(
                f"{self.name}: worker ids must be in [0, {num_workers - 1}] for "
                f"num_workers={num_workers}, got out-of-range ids {bad}"
            )

    def sample(
        self, step: int, generator: torch.Generator, num_workers: int, load: Any = None
    ) -> Tensor:
        _check_step(self.name, step)
        _check_generator(self.name, generator)
        self.check_workers(_int(self.name, "num_workers", num_workers))
        t = self.base.sample(step, generator, num_workers, load).clone()
        if self.workers:
            t[list(self.workers)] *= float(self.factor)
        if self.transient_prob > 0:
            u = torch.rand(num_workers, dtype=torch.float64, generator=generator)
            t = torch.where(u < float(self.transient_prob), t * float(self.transient_factor), t)
        return t

    def to_spec(self) -> dict[str, Any]:
        return {"model": self.name, "workers": list(self.workers), "factor": self.factor,
                "base": self.base.to_spec(), "transient_prob": self.transient_prob,
                "transient_factor": self.transient_factor}


DELAY_MODELS: dict[str, type] = {
    "none": NoDelay,
    "exponential": ExponentialDelay,
    "shifted_exponential": ShiftedExponentialDelay,
    "pareto": ParetoDelay,
    "slow_set": SlowSetDelay,
}

_PARAMS: dict[str, tuple[str, ...]] = {
    "none": ("base_time",),
    "exponential": ("rate", "base_time"),
    "shifted_exponential": ("mu", "base_time"),
    "pareto": ("alpha", "scale", "base_time"),
    "slow_set": ("workers", "factor", "base", "transient_prob", "transient_factor"),
}


def make_delay_model(
    spec: Mapping[str, Any] | str | DelayModel | None, *, num_workers: int | None = None
) -> DelayModel:
    """Build a delay model from a config value.

    ``spec`` is a name (``"pareto"``, defaults for every parameter), a mapping with key ``model``
    and the model's parameters (``{"model": "pareto", "alpha": 1.5, "base_time": 0.1}``), an
    existing model (returned as is) or ``None`` (no delay). ``slow_set`` takes its base model as a
    nested spec: ``{"model": "slow_set", "workers": [0, 3], "factor": 5,
    "base": {"model": "shifted_exponential", "mu": 2}}``. With ``num_workers`` the slow worker ids
    are checked to be in range now instead of at the first sample.
    """
    if spec is None:
        model: DelayModel = NoDelay()
    elif isinstance(spec, DelayModel):
        model = spec
    elif isinstance(spec, str):
        model = make_delay_model({"model": spec})
    elif isinstance(spec, Mapping):
        if "model" not in spec:
            raise StragglerError(
                f"make_delay_model: spec needs a 'model' key (one of {sorted(DELAY_MODELS)}), "
                f"got keys {sorted(spec)}"
            )
        name = spec["model"]
        if name not in DELAY_MODELS:
            raise StragglerError(
                f"make_delay_model: unknown delay model {name!r}; allowed: {sorted(DELAY_MODELS)}"
            )
        params = {k: v for k, v in spec.items() if k != "model"}
        unknown = sorted(set(params) - set(_PARAMS[name]))
        if unknown:
            raise StragglerError(
                f"make_delay_model: unknown parameter(s) {unknown} for model {name!r}; "
                f"allowed: {list(_PARAMS[name])}"
            )
        if name == "slow_set":
            if "workers" not in params:
                raise StragglerError(
                    "make_delay_model: slow_set needs 'workers' (list of slowed worker ids)"
                )
            params["base"] = make_delay_model(params.get("base"))
            if isinstance(params["workers"], Sequence) and not isinstance(params["workers"], str):
                params["workers"] = tuple(params["workers"])
        model = DELAY_MODELS[name](**params)
    else:
        raise StragglerError(
            f"make_delay_model: spec must be a name, a mapping or a delay model, "
            f"got {type(spec).__name__}"
        )
    if num_workers is not None and isinstance(model, SlowSetDelay):
        model.check_workers(_int("make_delay_model", "num_workers", num_workers))
    return model


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
# server policies and arrivals


@dataclass(frozen=True)
class WaitAll:
    """Wait for every worker (fully synchronous)."""

    name: str = field(default="wait_all", init=False)


@dataclass(frozen=True)
class FirstK:
    """Proceed after the first ``k`` arrivals; the rest are late and discarded."""

    k: int
    name: str = field(default="first_k", init=False)

    def __post_init__(self) -> None:
        k = _int("first_k", "k", self.k)
        if k < 1:
            raise StragglerError(f"first_k: k must be >= 1, got k={k}")


@dataclass(frozen=True)
class Deadline:
    """Accept what arrives by time ``t`` (inclusive); if nothing has, wait for the first message."""

    t: float
    name: str = field(default="deadline", init=False)

    def __post_init__(self) -> None:
        _nonneg("deadline", "t", self.t)


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
    allowed = {"wait_all": (), "first_k": ("k",), "deadline": ("t",)}
    name = spec.get("policy")
    if name not in allowed:
        raise StragglerError(
            f"make_policy: unknown server policy {name!r}; allowed: {sorted(allowed)}"
        )
    params = {k: v for k, v in spec.items() if k != "policy"}
    if set(params) != set(allowed[name]):
        raise StragglerError(
            f"make_policy: policy {name!r} takes exactly the parameters {list(allowed[name])}, "
            f"got {sorted(params)}"
        )
    return {"wait_all": WaitAll, "first_k": FirstK, "deadline": Deadline}[name](**params)


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


def _check_times(where: str, times: Any) -> Tensor:
    t = torch.as_tensor(times, dtype=torch.float64).detach().cpu()
    if t.dim() != 1 or t.shape[0] < 1:
        raise StragglerError(f"{where}: times must be a non-empty (K,) tensor, got shape {tuple(t.shape)}")
    if bool(torch.isnan(t).any()) or bool((t < 0).any()):
        raise StragglerError(f"{where}: times must be >= 0 and not NaN, got {t.tolist()}")
    return t


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


# --------------------------------------------------------------------------------------------
# clock


class SimulatedClock:
    """Simulated wall time of a run: the sum over steps of the server's wait (``step_time`` from
    :func:`arrivals`) plus the server-side compute time the caller measures or models
    (aggregation, decoding, dSTAR's validation gradient)."""

    def __init__(self) -> None:
        self.wait_time = 0.0
        self.server_time = 0.0
        self.steps = 0
        self.last_step = 0.0

    @property
    def now(self) -> float:
        """Total simulated seconds so far."""
        return self.wait_time + self.server_time

    def advance(self, step_time: float, server_time: float = 0.0) -> float:
        """Add one step (``step_time`` waiting + ``server_time`` computing); return its duration."""
        w = _nonneg("SimulatedClock.advance", "step_time", step_time)
        s = _nonneg("SimulatedClock.advance", "server_time", server_time)
        self.wait_time += w
        self.server_time += s
        self.steps += 1
        self.last_step = w + s
        return self.last_step

    def state_dict(self) -> dict[str, float | int]:
        """For checkpoints: resuming restores the exact same clock."""
        return {"wait_time": self.wait_time, "server_time": self.server_time,
                "steps": self.steps, "last_step": self.last_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.wait_time = float(state["wait_time"])
        self.server_time = float(state["server_time"])
        self.steps = int(state["steps"])
        self.last_step = float(state["last_step"])

    def __repr__(self) -> str:
        return f"SimulatedClock(now={self.now:.6g}s, steps={self.steps})"
