"""The simulated cluster: K workers and one server in one process, over a :class:`~.job.Job`.

Each step:

1. the server samples a batch and splits it into the scheme's files (:class:`FileSampler`);
2. every file's honest gradient is computed once, in one vectorised pass
   (:func:`per_file_gradients`), and shared by all its replicas;
3. the straggler model draws each worker's compute time (proportional to its load), Byzantine
   timing is applied (rushing by default) and the server policy decides whose messages count;
4. the scheme builds the Byzantine messages with the attack, decodes and aggregates.

All randomness of step t comes from generators derived from ``(seed, stream, t)``, so a run is
reproducible bit for bit and ``--resume`` is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..attacks import AttackContext
from ..schemes.base import NothingToAggregate, StepInfo, StepView
from ..seeding import generator
from ..training.pergrad import per_file_gradients
from ..aggregators import NonFiniteError
from .job import Job
from .loop import Diverged
from .records import StarStepperBase
from ..stragglers import arrivals
from .update import ModelUpdate

__all__ = ["SimulatedCluster", "SimulatedStepper", "StepOutput", "omniscient_view"]


@dataclass
class StepOutput:
    gradient: Tensor
    info: StepInfo
    loss: float | None
    sim_time: float


def omniscient_view(job: Job, model: torch.nn.Module, step: int) -> tuple[StepView, float | None, float]:
    """What an omniscient observer knows of step ``step`` at ``model``: ``(view, training loss,
    simulated time)``.

    The view holds every file's honest gradient (computed once, shared by all replicas), the
    Byzantine placement, the simulated arrivals and the attack. The simulator hands it to the
    scheme; a Byzantine worker process of the real runtime builds the same view to act as the
    simulated (omniscient) adversary does.
    """
    ds = job.dataset
    idx = job.batch_indices(step)
    x, y = ds.x_train[idx], ds.y_train[idx]
    G, loss = per_file_gradients(model, job.loss_fn, x, y, return_loss=True)
    byz = job.byzantine_mask(step)
    arr = arrivals(job.delays(step), job.policy)
    view = StepView(
        step=step,
        honest=G,
        byzantine=byz,
        received=arr.received,
        arrival_order=arr.accepted,
        attack=_attack_fn(job, model, x, y) if job.attack is not None and byz.any() else None,
        validation=lambda: job.validation_gradient(model, step),
        generator=generator(job.cfg.seed, "attack", step),
        data_level=bool(job.attack is not None and job.attack.data_level),
    )
    return view, loss, float(arr.step_time)


def _attack_fn(job: Job, model: torch.nn.Module, x: Tensor, y: Tensor):
    attack = job.attack
    if attack.data_level:
        num_classes = job.dataset.num_classes

        def data_attack(ctx: AttackContext, files: Tensor) -> Tensor:
            yf = attack.transform_labels(y[files], num_classes)
            return per_file_gradients(model, job.loss_fn, x[files], yf)

        return data_attack

    def vector_attack(ctx: AttackContext, files: Tensor) -> Tensor:
        return attack(ctx, collude=False)

    return vector_attack


class SimulatedCluster:
    """A job's K workers and its server in one process, stepping the job's model."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.model = job.model
        self.scheme = job.scheme

    def step(self, step: int) -> StepOutput:
        """One simulated step: the scheme decodes and aggregates the step's messages."""
        view, loss, sim_time = omniscient_view(self.job, self.model, step)
        try:
            grad, info = self.scheme.simulate(view)
        except (NonFiniteError, NothingToAggregate) as e:  # more bad inputs than tolerated
            raise Diverged(f"step {step}: {e}") from None
        if not torch.isfinite(grad).all():
            raise Diverged(
                f"step {step}: the aggregated gradient of {self.scheme.name} is not finite "
                f"(aggregator {self.scheme.aggregator_spec!r}, f={self.scheme.aggregator_f})"
            )
        return StepOutput(grad, info, loss, sim_time)


class SimulatedStepper(StarStepperBase):
    """The training loop's step in the simulator: the cluster's aggregated gradient, applied to
    the job's model by SGD (:class:`~.update.ModelUpdate`)."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.cluster = SimulatedCluster(job)
        self.update = ModelUpdate(job.model, job.cfg, job.dataset)

    def step(self, t: int) -> dict[str, Any]:
        self.job.model.train()
        out = self.cluster.step(t)
        if out.loss is not None and not math.isfinite(out.loss):
            raise Diverged(f"step {t}: the training loss is {out.loss}")
        lr = self.update.apply(out.gradient)
        if not self.update.finite():
            raise Diverged(f"step {t}: the model's parameters are not finite after the update")
        info = out.info
        return {
            "step": t, "loss": out.loss, "lr": lr, "message_seconds": out.sim_time,
            "distorted_files": info.distorted_files, "dropped_files": info.dropped_files,
            "received": info.received, "byzantine_accepted": info.byzantine_accepted,
        }
