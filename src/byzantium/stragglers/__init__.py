"""Stragglers: per-worker delay models, Byzantine timing and server arrival policies.

A step in the simulated cluster takes the time the server waits for messages plus its own compute
time. :mod:`.delays` turns a delay model into per-worker latencies ``tau (K,)`` (float64
seconds); :mod:`.arrivals` lets Byzantine workers choose when to arrive and cuts the arrivals
with a server policy (wait for all, the first ``k``, or a deadline).

Delay models (``tau_i`` for worker ``i`` at one step; ``c_i = base_time * load_i``):

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
§1.5). The dSTAR paper's own delay model is unknown, so all of this is configurable. A new delay
model is a frozen dataclass subclassing ``DelayModelBase`` (its parameters declared with
``checks.bounded``), decorated with ``@delay_model``.
"""

from __future__ import annotations

from .arrivals import (
    BYZANTINE_TIMINGS,
    SERVER_POLICIES,
    ArrivalResult,
    Deadline,
    FirstK,
    ServerPolicy,
    WaitAll,
    apply_byzantine_timing,
    arrivals,
    deadline,
    first_k,
    make_policy,
    wait_all,
)
from .checks import StragglerError
from .delays import (
    DELAY_MODELS,
    DelayModel,
    DelayModelBase,
    ExponentialDelay,
    NoDelay,
    ParetoDelay,
    ShiftedExponentialDelay,
    SlowSetDelay,
    delay_model,
    make_delay_model,
)

__all__ = [
    "StragglerError",
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
