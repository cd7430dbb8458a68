"""What every scheme provides to the runtimes.

A scheme is a composition: an assignment (who computes what), a worker encoding, a server decoder
and an aggregator. The simulator hands it one step's view (honest per-file gradients, who is
Byzantine, which messages arrived, the attack); it returns the gradient the server applies and a
:class:`StepInfo` record of what happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch
from torch import Tensor

__all__ = ["StepInfo", "StepView", "Scheme", "NothingToAggregate"]


class NothingToAggregate(RuntimeError):
    """No input of a step survived decoding (no majority anywhere, every copy missing or
    non-finite): the step has no gradient."""


@dataclass
class StepInfo:
    """What the server saw and did in one step (logged to metrics.csv)."""

    distorted_files: int = 0
    """Decoded inputs of the aggregator that are not the honest value (vote lost, or Byzantine)."""
    dropped_files: int = 0
    """Inputs with no decodable value (no majority, all copies missing)."""
    received: int = 0
    """Workers whose messages counted this step."""
    byzantine_accepted: int | None = None
    """Byzantine vectors that passed a filter (dSTAR) or located adversaries (DRACO cyclic)."""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepView:
    """Everything one simulated server step may use.

    ``honest`` holds the honest gradient of every file, computed once and shared by all replicas.
    ``attack`` turns an :class:`byzantium.attacks.AttackContext` into Byzantine vectors (or is None
    when there is no attack). ``validation`` computes the server's trusted validation gradient (dSTAR).
    """

    step: int
    honest: Tensor
    byzantine: Tensor
    received: Tensor
    arrival_order: Tensor
    attack: Callable[..., Tensor] | None
    validation: Callable[[], Tensor] | None
    generator: torch.Generator
    data_level: bool = False
    """True when the attack is data-level (label flipping): ``attack(ctx, files)`` then ignores
    ``ctx`` and returns honest gradients of those files computed on corrupted labels."""


class Scheme(Protocol):
    """The interface the runtimes use; see :mod:`byzantium.schemes.vote` for the main one."""

    name: str
    num_workers: int
    num_files: int
    aggregator_spec: str
    aggregator_f: int
    first_k: int | None
    """The scheme's own arrival policy (aggregate the first ``k`` arrivals), or None for the
    run's ``stragglers`` policy."""

    def load(self) -> Tensor:
        """Files computed by each worker, shape (K,), for the straggler model."""
        ...

    def worst_case_workers(self, q: int) -> tuple[int, ...]:
        """The q workers an omniscient adversary picks against this scheme."""
        ...

    def simulate(self, view: StepView) -> tuple[Tensor, StepInfo]:
        """One server step in the simulator: Byzantine messages, decoding, aggregation."""
        ...

    def describe(self) -> dict[str, Any]:
        """Static facts for the run summary (assignment, r, load, c_max...)."""
        ...

    # ---- real messages (the distributed runtime; see byzantium.runtime.distributed)
    def worker_message(self, worker: int, file_grads: Tensor) -> Tensor:
        """What an honest worker sends, from its files' gradients (identity stack or encoding)."""
        ...

    def byzantine_messages(self, view: StepView) -> dict[int, Tensor]:
        """What each Byzantine worker sends at the step of ``view`` (the simulator's attack)."""
        ...

    def server_aggregate(
        self, messages: Tensor, received: Tensor, *, step: int, **kw: Any
    ) -> tuple[Tensor, StepInfo]:
        """Decode and aggregate the validated messages the server received."""
        ...

    def check_live(self, alive: Tensor) -> str | None:
        """Why the scheme's guarantee no longer holds with only the ``alive`` workers, or None."""
        ...
