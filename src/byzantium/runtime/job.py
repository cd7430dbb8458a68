"""The job: every part of a run built once from its configuration.

A :class:`Job` holds the data set and its split into training and trusted validation data, the
model (initial parameters from the seed), the scheme (assignment + decoder + aggregator), the
attack and the Byzantine placement, the file sampler, the straggler model and the arrival policy.
The simulated cluster, the parameter server, every worker and the ByzSGD ranks consume the same
Job; all randomness of step ``t`` comes from generators derived from ``(seed, stream, t)``
(:mod:`byzantium.seeding`), so every process that builds the Job from the same config draws the
same batches, placements and delays without exchanging anything but parameters and messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from ..attacks import get as get_attack
from ..config import ConfigError, RunConfig, SchemeConfig
from ..schemes import SchemeContext, build_scheme
from ..schemes.registry import topology
from ..seeding import generator
from ..training.datasets import load_run_dataset
from ..training.split import FileSampler
from ..training.models import build_model, loss_fn as make_loss_fn
from ..training.pergrad import per_file_gradients
from ..stragglers import apply_byzantine_timing, first_k, make_delay_model, wait_all

__all__ = ["Job", "build_job"]


@dataclass
class Job:
    """One scheme's run: its parts, built once (see :func:`build_job`)."""

    cfg: RunConfig
    scheme_cfg: SchemeConfig
    label: str
    attack_enabled: bool
    dataset: Any
    model: torch.nn.Module
    loss_fn: Callable[..., Tensor]
    scheme: Any
    q: int
    attack: Any
    sampler: FileSampler
    train_idx: Tensor
    val_idx: Tensor
    delay: Any
    policy: Any
    load: Tensor
    byzantine_workers_initial: tuple[int, ...] = field(default=())

    @property
    def workers(self) -> int:
        return self.cfg.workers

    @property
    def samples_per_step(self) -> int:
        return self.sampler.num_files * self.sampler.file_size

    # ------------------------------------------------------------------ placement
    def place(self, step: int) -> tuple[int, ...]:
        """The Byzantine workers at ``step`` (sorted)."""
        K, q = self.cfg.workers, self.q
        if q == 0:
            return ()
        placement = self.cfg.attack.placement
        if placement == "worst_case":
            return tuple(sorted(self.scheme.worst_case_workers(q)))
        stream_step = step if placement == "redraw" else 0
        g = generator(self.cfg.seed, "placement", stream_step)
        return tuple(sorted(torch.randperm(K, generator=g)[:q].tolist()))

    def byzantine_mask(self, step: int) -> Tensor:
        """``(K,)`` bool: who is Byzantine at ``step``."""
        redraw = self.cfg.attack.placement == "redraw"
        workers = self.place(step) if redraw else self.byzantine_workers_initial
        mask = torch.zeros(self.cfg.workers, dtype=torch.bool)
        if workers:
            mask[list(workers)] = True
        return mask

    # ------------------------------------------------------------------ per-step draws
    def batch_indices(self, step: int) -> Tensor:
        """The ``(files, file_size)`` training indices of step ``step``."""
        return self.sampler.sample(step, generator(self.cfg.seed, "data", step))

    def delays(self, step: int) -> Tensor:
        """Every worker's simulated latency at ``step`` (Byzantine timing applied), in seconds."""
        times = self.delay.sample(
            step, generator(self.cfg.seed, "delay", step), self.cfg.workers, self.load
        )
        byz = self.byzantine_mask(step)
        if byz.any():
            times = apply_byzantine_timing(times, byz, self.cfg.attack.timing)
        return times

    def validation_gradient(self, model: torch.nn.Module, step: int) -> Tensor:
        """The server's trusted gradient of ``model`` on a batch of its held-out validation data
        (dSTAR), drawn from ``(seed, "validation", step)``."""
        m = self.sampler.file_size
        g = generator(self.cfg.seed, "validation", step)
        pick = self.val_idx[torch.randperm(self.val_idx.numel(), generator=g)[:m]]
        x = self.dataset.x_train[pick].unsqueeze(0)
        y = self.dataset.y_train[pick].unsqueeze(0)
        return per_file_gradients(model, self.loss_fn, x, y)[0]

    def describe(self) -> dict[str, Any]:
        """Static facts for the run summary."""
        return {
            "straggler_model": self.cfg.stragglers.model,
            "policy": type(self.policy).__name__,
            **self.scheme.describe(),
        }


def build_job(
    cfg: RunConfig,
    scheme_cfg: SchemeConfig | None = None,
    *,
    attack_enabled: bool = True,
    dataset: Any = None,
    label: str | None = None,
) -> Job:
    """Build the :class:`Job` of ``scheme_cfg`` (default ``cfg.scheme``) in run ``cfg``.

    ``attack_enabled=False`` gives the same run without Byzantine workers (a compare's clean
    entry). ``dataset``: an already loaded data set (else the config's, loaded here). Errors in
    the scheme's parameters are :class:`ConfigError` naming the scheme.
    """
    sc = scheme_cfg or cfg.scheme
    if topology(sc.name) != "star":
        raise ConfigError(
            f"scheme {sc.display!r}: a {topology(sc.name)}-server scheme has no single server; "
            "its servers run in byzantium.runtime.byzsgd_sim (simulator) and the mesh runtime"
        )
    if dataset is None:
        dataset = load_run_dataset(cfg)
    K = cfg.workers
    q_cfg = sc.q if sc.q is not None else cfg.attack.q
    q = q_cfg if attack_enabled else 0
    scheme = build_scheme(sc.name, sc.display, sc.params,
                          SchemeContext(workers=K, q=q, first_k=cfg.stragglers.k))
    if scheme.num_workers != K:
        raise ConfigError(f"scheme {sc.display!r} needs {scheme.num_workers} workers but workers={K}")
    attack = get_attack(cfg.attack.name, **cfg.attack.params) if q > 0 else None

    # the server keeps the last `validation_size` training examples as trusted data (dSTAR)
    n_train = int(dataset.y_train.shape[0])
    n_val = cfg.data.validation_size
    if n_val >= n_train:
        raise ConfigError(
            f"data.validation_size: {n_val} leaves no training data (training set has {n_train})"
        )
    sampler = FileSampler(
        dataset.y_train[: n_train - n_val],
        num_files=scheme.num_files,
        batch_size=cfg.training.batch_size,
        split=cfg.data.split,
        alpha=cfg.data.alpha if cfg.data.split == "dirichlet" else None,
        seed=cfg.seed,
        num_classes=dataset.num_classes or None,
    )
    delay = make_delay_model({"model": cfg.stragglers.model, **cfg.stragglers.params}, num_workers=K)
    if scheme.first_k is not None:  # the scheme's own arrival policy (dSTAR)
        policy = first_k(int(scheme.first_k))
    elif cfg.stragglers.policy == "first_k":
        policy = first_k(int(cfg.stragglers.k))
    else:
        policy = wait_all()
    model = build_model(cfg.model.name, dataset, seed=cfg.seed, **cfg.model.params)
    job = Job(
        cfg=cfg, scheme_cfg=sc, label=label or sc.display, attack_enabled=attack_enabled,
        dataset=dataset, model=model, loss_fn=make_loss_fn(dataset), scheme=scheme, q=q,
        attack=attack, sampler=sampler, train_idx=torch.arange(n_train - n_val),
        val_idx=torch.arange(n_train - n_val, n_train), delay=delay, policy=policy,
        load=scheme.load(),
    )
    job.byzantine_workers_initial = job.place(0)
    return job
