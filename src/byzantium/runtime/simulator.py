"""The simulated cluster: K workers and one server in one process.

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

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..attacks import AttackContext
from ..attacks import get as get_attack
from ..config import ConfigError, RunConfig, SchemeConfig
from ..schemes import SchemeContext, build_scheme
from ..schemes.base import StepInfo, StepView
from ..seeding import generator
from ..training.data import FileSampler
from ..training.models import loss_fn as make_loss_fn
from ..training.pergrad import per_file_gradients
from .stragglers import (
    apply_byzantine_timing,
    arrivals,
    first_k,
    make_delay_model,
    wait_all,
)

__all__ = ["SimulatedCluster", "StepOutput"]


@dataclass
class StepOutput:
    gradient: Tensor
    info: StepInfo
    loss: float | None
    sim_time: float


class SimulatedCluster:
    """One scheme, its Byzantine workers, stragglers and data, stepping a shared model."""

    def __init__(
        self,
        cfg: RunConfig,
        scheme_cfg: SchemeConfig,
        dataset: Any,
        model: torch.nn.Module,
        *,
        attack_enabled: bool = True,
    ) -> None:
        self.cfg = cfg
        self.dataset = dataset
        self.model = model
        self.loss_fn = make_loss_fn(dataset)
        K = cfg.workers
        q = scheme_cfg.q if scheme_cfg.q is not None else cfg.attack.q
        self.q = q if attack_enabled else 0
        self.scheme = build_scheme(
            scheme_cfg.name, scheme_cfg.display, scheme_cfg.params,
            SchemeContext(workers=K, q=self.q, first_k=cfg.stragglers.k),
        )
        if self.scheme.num_workers != K:
            raise ConfigError(
                f"scheme {scheme_cfg.display!r} needs {self.scheme.num_workers} workers but "
                f"workers={K}"
            )
        self.attack = get_attack(cfg.attack.name, **cfg.attack.params) if self.q > 0 else None

        # the server keeps the last `validation_size` training examples as trusted data (dSTAR)
        n_train = int(dataset.y_train.shape[0])
        n_val = cfg.data.validation_size
        if n_val >= n_train:
            raise ConfigError(
                f"data.validation_size: {n_val} leaves no training data (training set has {n_train})"
            )
        self.train_idx = torch.arange(n_train - n_val)
        self.val_idx = torch.arange(n_train - n_val, n_train)
        self.sampler = FileSampler(
            dataset.y_train[: n_train - n_val],
            num_files=self.scheme.num_files,
            batch_size=cfg.training.batch_size,
            split=cfg.data.split,
            alpha=cfg.data.alpha if cfg.data.split == "dirichlet" else None,
            seed=cfg.seed,
            num_classes=dataset.num_classes or None,
        )
        self.samples_per_step = self.sampler.num_files * self.sampler.file_size

        # stragglers
        self.delay = make_delay_model(
            {"model": cfg.stragglers.model, **cfg.stragglers.params}, num_workers=K
        )
        if self.scheme.first_k is not None:  # the scheme's own arrival policy (dSTAR)
            self.policy = first_k(int(self.scheme.first_k))
        elif cfg.stragglers.policy == "first_k":
            self.policy = first_k(int(cfg.stragglers.k))
        else:
            self.policy = wait_all()
        self.load = self.scheme.load()

        # Byzantine placement
        self.placement = cfg.attack.placement
        self.byzantine_workers_initial = self._place(0)

    # ------------------------------------------------------------------ placement
    def _place(self, step: int) -> tuple[int, ...]:
        K, q = self.cfg.workers, self.q
        if q == 0:
            return ()
        if self.placement == "worst_case":
            return tuple(sorted(self.scheme.worst_case_workers(q)))
        stream_step = step if self.placement == "redraw" else 0
        g = generator(self.cfg.seed, "placement", stream_step)
        return tuple(sorted(torch.randperm(K, generator=g)[:q].tolist()))

    def byzantine_mask(self, step: int) -> Tensor:
        workers = (
            self._place(step) if self.placement == "redraw" else self.byzantine_workers_initial
        )
        mask = torch.zeros(self.cfg.workers, dtype=torch.bool)
        if workers:
            mask[list(workers)] = True
        return mask

    # ------------------------------------------------------------------ one step
    def delays(self, step: int) -> Tensor:
        """Every worker's simulated latency at ``step`` (Byzantine timing applied), in seconds."""
        times = self.delay.sample(
            step, generator(self.cfg.seed, "delay", step), self.cfg.workers, self.load
        )
        byz = self.byzantine_mask(step)
        if byz.any():
            times = apply_byzantine_timing(times, byz, self.cfg.attack.timing)
        return times

    def view(self, step: int) -> tuple[StepView, float | None, float]:
        """What the server's step ``step`` works on: ``(view, training loss, simulated time)``.

        The view holds every file's honest gradient, the Byzantine placement, the arrivals and the
        attack; the distributed runtime's Byzantine processes rebuild the same view to act as the
        simulated (omniscient) adversary does.
        """
        ds = self.dataset
        idx = self.sampler.sample(step, generator(self.cfg.seed, "data", step))
        x, y = ds.x_train[idx], ds.y_train[idx]
        G, loss = self._gradients(x, y)
        byz = self.byzantine_mask(step)
        arr = arrivals(self.delays(step), self.policy)
        view = StepView(
            step=step,
            honest=G,
            byzantine=byz,
            received=arr.received,
            arrival_order=arr.accepted,
            attack=self._attack_fn(x, y) if self.attack is not None and byz.any() else None,
            validation=lambda: self._validation_gradient(step),
            generator=generator(self.cfg.seed, "attack", step),
            data_level=bool(self.attack is not None and self.attack.data_level),
        )
        return view, loss, float(arr.step_time)

    def step(self, step: int) -> StepOutput:
        """One simulated step: the scheme decodes and aggregates the step's messages."""
        view, loss, sim_time = self.view(step)
        grad, info = self.scheme.simulate(view)
        if not torch.isfinite(grad).all():
            raise RuntimeError(
                f"step {step}: the aggregated gradient of {self.scheme.name} is not finite "
                f"(aggregator {self.scheme.aggregator_spec!r}, f={self.scheme.aggregator_f})"
            )
        return StepOutput(grad, info, loss, sim_time)

    def _gradients(self, x: Tensor, y: Tensor) -> tuple[Tensor, float | None]:
        return per_file_gradients(self.model, self.loss_fn, x, y, return_loss=True)

    def _attack_fn(self, x: Tensor, y: Tensor):
        attack = self.attack
        if attack.data_level:
            num_classes = self.dataset.num_classes

            def data_attack(ctx: AttackContext, files: Tensor) -> Tensor:
                yf = attack.transform_labels(y[files], num_classes)
                return per_file_gradients(self.model, self.loss_fn, x[files], yf)

            return data_attack

        def vector_attack(ctx: AttackContext, files: Tensor) -> Tensor:
            return attack(ctx, collude=False)

        return vector_attack

    def _validation_gradient(self, step: int) -> Tensor:
        """The server's trusted gradient on a batch of its held-out validation data."""
        m = self.sampler.file_size
        g = generator(self.cfg.seed, "validation", step)
        pick = self.val_idx[torch.randperm(self.val_idx.numel(), generator=g)[:m]]
        x = self.dataset.x_train[pick].unsqueeze(0)
        y = self.dataset.y_train[pick].unsqueeze(0)
        return per_file_gradients(self.model, self.loss_fn, x, y)[0]

    def describe(self) -> dict[str, Any]:
        return {
            "straggler_model": self.cfg.stragglers.model,
            "policy": type(self.policy).__name__,
            **self.scheme.describe(),
        }
