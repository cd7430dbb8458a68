"""Per-worker delay models: ``sample(step, generator, K, load) -> tau (K,)`` float64 seconds.

Each model is a frozen dataclass registered by name in :data:`DELAY_MODELS`; its fields are its
parameters, validated once at construction (:mod:`.checks`). :func:`make_delay_model` builds one
from a config value. ``c_i = base_time * load_i``, so a worker that computes ``l`` files takes
``l`` times longer and redundancy is paid for in simulated time.

Every sampler draws a fixed number of values from the ``torch.Generator`` it is given (``K`` per
random component, whatever the parameters), on the CPU in float64, so a run is reproducible from
its seed and independent of the device.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor

from ..registry import Registry
from .checks import StragglerError, bounded, check_fields, check_int

__all__ = [
    "DelayModel",
    "DelayModelBase",
    "NoDelay",
    "ExponentialDelay",
    "ShiftedExponentialDelay",
    "ParetoDelay",
    "SlowSetDelay",
    "DELAY_MODELS",
    "delay_model",
    "make_delay_model",
]


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


DELAY_MODELS: Registry[type] = Registry("delay model", error=StragglerError)
"""Delay-model classes by name (their ``name`` field)."""


def delay_model(cls: type) -> type:
    """Register a delay-model dataclass under its ``name``."""
    return DELAY_MODELS.add(cls.name, cls)


# --------------------------------------------------------------------------------------------
# arguments of sample()


def _check_step(where: str, step: int) -> None:
    step = check_int(where, "step", step)
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


def _base_times(where: str, base_time: float, num_workers: int, load: Any) -> Tensor:
    """``c_i = base_time * load_i`` as a float64 ``(K,)`` tensor (``load`` defaults to ones)."""
    num_workers = check_int(where, "num_workers", num_workers)
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
# models


class DelayModelBase:
    """What the delay-model dataclasses share: their :func:`~.checks.bounded` fields checked at
    construction, and their spec (``{"model": name, **parameters}``)."""

    name: str

    def __post_init__(self) -> None:
        check_fields(self)

    def to_spec(self) -> dict[str, Any]:
        """The mapping :func:`make_delay_model` turns back into an equal model."""
        spec: dict[str, Any] = {"model": self.name}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.init:
                v = getattr(self, f.name)
                if isinstance(v, tuple):
                    v = list(v)
                elif isinstance(v, DelayModel):
                    v = v.to_spec()
                spec[f.name] = v
        return spec


@delay_model
@dataclass(frozen=True)
class NoDelay(DelayModelBase):
    """Deterministic latency ``tau_i = base_time * load_i`` (no stragglers)."""

    base_time: float = bounded(1.0, ge=0)
    name: str = field(default="none", init=False)

    def sample(
        self, step: int, generator: torch.Generator, num_workers: int, load: Any = None
    ) -> Tensor:
        return _start(self.name, step, generator, float(self.base_time), num_workers, load)

    def mean(self) -> float:
        """Expected latency per unit of load."""
        return float(self.base_time)


@delay_model
@dataclass(frozen=True)
class ExponentialDelay(DelayModelBase):
    """``tau_i = c_i * X_i`` with ``X_i ~ Exp(rate)`` i.i.d. (mean ``c_i / rate``)."""

    rate: float = bounded(1.0, gt=0)
    base_time: float = bounded(1.0, ge=0)
    name: str = field(default="exponential", init=False)

    def sample(
        self, step: int, generator: torch.Generator, num_workers: int, load: Any = None
    ) -> Tensor:
        c = _start(self.name, step, generator, float(self.base_time), num_workers, load)
        return c * _exp(c.shape[0], float(self.rate), generator)

    def mean(self) -> float:
        return float(self.base_time) / float(self.rate)


@delay_model
@dataclass(frozen=True)
class ShiftedExponentialDelay(DelayModelBase):
    """``tau_i = c_i * (1 + X_i)`` with ``X_i ~ Exp(mu)`` (dSTAR spec §1.5; mean ``c_i (1 + 1/mu)``).

    Every worker needs at least its base time ``c_i``; the exponential tail models random
    slowdowns (the standard model of the coded-computing literature).
    """

    mu: float = bounded(1.0, gt=0)
    base_time: float = bounded(1.0, ge=0)
    name: str = field(default="shifted_exponential", init=False)

    def sample(
        self, step: int, generator: torch.Generator, num_workers: int, load: Any = None
    ) -> Tensor:
        c = _start(self.name, step, generator, float(self.base_time), num_workers, load)
        return c * (1.0 + _exp(c.shape[0], float(self.mu), generator))

    def mean(self) -> float:
        return float(self.base_time) * (1.0 + 1.0 / float(self.mu))


@delay_model
@dataclass(frozen=True)
class ParetoDelay(DelayModelBase):
    """``tau_i = c_i * P_i`` with ``P_i ~ Pareto(alpha, scale)``: ``P(P > x) = (scale/x)^alpha``
    for ``x >= scale``. Heavy tail; the mean ``alpha scale / (alpha - 1)`` is finite only for
    ``alpha > 1`` and the variance only for ``alpha > 2``. Sampled by inversion,
    ``P = scale * U^(-1/alpha)`` with ``U`` uniform on ``(0, 1]``.
    """

    alpha: float = bounded(2.0, gt=0)
    scale: float = bounded(1.0, gt=0)
    base_time: float = bounded(1.0, ge=0)
    name: str = field(default="pareto", init=False)

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


@delay_model
@dataclass(frozen=True)
class SlowSetDelay(DelayModelBase):
    """A base model, with a fixed set of workers slowed by ``factor`` (persistent stragglers), and
    optionally every worker slowed by ``transient_factor`` with probability ``transient_prob`` at
    each step, independently (transient stragglers; dSTAR spec §1.5).

    ``tau_i = base_i * (factor if i in workers else 1) * (transient_factor if U_i < p else 1)``.
    When ``transient_prob > 0`` exactly ``K`` uniforms are drawn after the base model's draws.
    ``workers`` (required, may be empty) is stored sorted; ``base`` may be given as a spec for
    :func:`make_delay_model` (default: no delay).
    """

    workers: tuple[int, ...]
    factor: float = bounded(2.0, ge=1, note=" (a slowdown)")
    base: Any = field(default_factory=NoDelay)
    transient_prob: float = bounded(0.0, ge=0, le=1)
    transient_factor: float = bounded(1.0, ge=1, note=" (a slowdown)")
    name: str = field(default="slow_set", init=False)

    def __post_init__(self) -> None:
        where = self.name
        if isinstance(self.workers, (str, bytes)) or not isinstance(self.workers, Sequence):
            raise StragglerError(
                f"{where}: workers must be a list of worker ids, got {self.workers!r}"
            )
        ids = tuple(check_int(where, "workers[]", w) for w in self.workers)
        if any(w < 0 for w in ids):
            raise StragglerError(f"{where}: worker ids must be >= 0, got workers={list(ids)}")
        if len(set(ids)) != len(ids):
            raise StragglerError(f"{where}: worker ids must be distinct, got workers={list(ids)}")
        object.__setattr__(self, "workers", tuple(sorted(ids)))
        if not isinstance(self.base, DelayModel):
            object.__setattr__(self, "base", make_delay_model(self.base))
        if isinstance(self.base, SlowSetDelay):
            raise StragglerError(f"{where}: base must not itself be a slow_set model")
        check_fields(self)

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
        self.check_workers(check_int(self.name, "num_workers", num_workers))
        t = self.base.sample(step, generator, num_workers, load).clone()
        if self.workers:
            t[list(self.workers)] *= float(self.factor)
        if self.transient_prob > 0:
            u = torch.rand(num_workers, dtype=torch.float64, generator=generator)
            t = torch.where(u < float(self.transient_prob), t * float(self.transient_factor), t)
        return t


# --------------------------------------------------------------------------------------------
# from a config value


def _parameters(cls: type) -> tuple[list[str], list[str]]:
    """``(all, required)`` constructor parameters of a delay-model dataclass."""
    init = [f for f in dataclasses.fields(cls) if f.init]
    required = [f.name for f in init
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    return [f.name for f in init], required


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
    where = "make_delay_model"
    if spec is None:
        model: DelayModel = NoDelay()
    elif isinstance(spec, DelayModel):
        model = spec
    elif isinstance(spec, str):
        model = make_delay_model({"model": spec})
    elif isinstance(spec, Mapping):
        if "model" not in spec:
            raise StragglerError(
                f"{where}: spec needs a 'model' key (one of {DELAY_MODELS.names()}), "
                f"got keys {sorted(spec)}"
            )
        name = spec["model"]
        if not isinstance(name, str) or name not in DELAY_MODELS:
            raise StragglerError(DELAY_MODELS.unknown(name, where))
        cls = DELAY_MODELS[name]
        params = {k: v for k, v in spec.items() if k != "model"}
        allowed, required = _parameters(cls)
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise StragglerError(
                f"{where}: unknown parameter(s) {unknown} for model {name!r}; allowed: {allowed}"
            )
        missing = [p for p in required if p not in params]
        if missing:
            raise StragglerError(f"{where}: model {name!r} needs the parameter(s) {missing}")
        model = cls(**params)
    else:
        raise StragglerError(
            f"{where}: spec must be a name, a mapping or a delay model, "
            f"got {type(spec).__name__}"
        )
    if num_workers is not None and isinstance(model, SlowSetDelay):
        model.check_workers(check_int(where, "num_workers", num_workers))
    return model
