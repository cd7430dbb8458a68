"""What the server and every worker build identically from the run configuration.

Each rank loads the data set (deterministic from the config: nothing is sent over the wire but
parameters and messages), builds the model and a :class:`~byzantium.runtime.simulator.
SimulatedCluster`, which holds the scheme object, the file sampler, the straggler model, the
attack and the Byzantine placement: the distributed runtime reuses those parts rather than
re-deriving them, so both runtimes agree on every per-step random draw (generators derived from
``(seed, stream, step)``).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import torch
import yaml

from ...config import RunConfig, to_dict
from ...schemes.base import StepView
from ..simulator import SimulatedCluster
from .frames import wire_numel

__all__ = ["Geometry", "build_cluster", "geometry", "simulated_view", "default_session", "step_delays",
           "process_fault"]


@dataclass(frozen=True)
class Geometry:
    """Sizes both ends agree on: ``d`` parameters, the scheme's message shape and dtype, and the
    float32 slots of a parameter frame and of a message frame."""

    d: int
    message_shape: tuple[int, ...]
    message_dtype: torch.dtype
    param_slots: int
    message_slots: int


def build_cluster(cfg: RunConfig, dataset: Any = None) -> tuple[Any, torch.nn.Module, SimulatedCluster]:
    """``(dataset, model, cluster)`` exactly as :func:`byzantium.training.loop.run_training`
    builds them (same data, same initial parameters, same scheme and placement)."""
    from ...training.data import load_run_dataset
    from ...training.models import build_model

    if dataset is None:
        dataset = load_run_dataset(cfg)
    model = build_model(cfg.model.name, dataset, seed=cfg.seed, **cfg.model.params)
    cluster = SimulatedCluster(cfg, cfg.scheme, dataset, model)
    return dataset, model, cluster


def geometry(cluster: SimulatedCluster) -> Geometry:
    d = sum(p.numel() for p in cluster.model.parameters())
    scheme = cluster.scheme
    for attr in ("message_shape", "worker_message", "server_aggregate", "byzantine_messages",
                 "check_live"):
        if not hasattr(scheme, attr):
            raise TypeError(
                f"scheme {scheme.name!r} ({type(scheme).__name__}) has no {attr}(): it cannot run "
                "in the distributed runtime"
            )
    shape = tuple(scheme.message_shape(d))
    dtype = scheme.message_dtype
    return Geometry(d, shape, dtype, d, wire_numel(shape, dtype))


def simulated_view(cluster: SimulatedCluster, step: int) -> StepView:
    """The simulator's view of ``step`` (what :meth:`SimulatedCluster.step` hands the scheme):
    all files' honest gradients, the Byzantine placement, the simulated arrivals, the attack.

    A Byzantine worker process rebuilds it to compute its message: the adversary is omniscient
    (it knows the data, the parameters and who else is Byzantine), and recomputing the honest
    gradients of every file itself gives it exactly the knowledge the simulated adversary has,
    without a side channel that could hang or leak into the honest protocol.
    """
    return cluster.view(step)[0]


def step_delays(cluster: SimulatedCluster, step: int) -> torch.Tensor:
    """Every worker's simulated latency at ``step`` (the simulator's draw, Byzantine timing
    applied), in simulated seconds."""
    return cluster.delays(step)


def default_session(cfg: RunConfig, port: int | str) -> int:
    """A session number every rank derives alike from the resolved config and the rendezvous port
    (the launcher passes a random one instead)."""
    text = yaml.safe_dump(to_dict(cfg), sort_keys=True) + f"|{port}"
    return zlib.crc32(text.encode()) | 1


def process_fault(fault: str | None, who: str, step: int, say: Any) -> None:
    """Fault injection on this process: ``kill`` (SIGKILL itself), ``stop`` (SIGSTOP: it hangs
    until killed) or ``freeze`` (SIGSTOP, and a child sends SIGCONT ``FREEZE_SECONDS`` later);
    anything else is left to the caller."""
    import os
    import signal
    import subprocess

    from .options import FREEZE_SECONDS

    if fault in ("kill", "stop", "freeze"):
        sig = signal.SIGKILL if fault == "kill" else signal.SIGSTOP
        say(f"{who}: fault injection: {fault} ({sig.name}) at step {step}")
        if fault == "freeze":
            subprocess.Popen(["/bin/sh", "-c", f"sleep {FREEZE_SECONDS}; kill -CONT {os.getpid()}"],
                             start_new_session=True)
        os.kill(os.getpid(), sig)


def progress_line(step: int, steps: int, start: int, t_run: float, loss: float | None,
                  acc: float | None, received: int, of: int) -> str:
    """The server's progress line after ``step`` (0-based; ``start``: first step of this process,
    ``t_run``: its ``time.perf_counter()`` then)."""
    import time

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.4f}"

    rate = (step + 1 - start) / max(1e-9, time.perf_counter() - t_run)
    return (f"step {step + 1}/{steps}  loss {fmt(loss)}  acc {fmt(acc)}  received {received}/{of}  "
            f"{rate:.2f} steps/s")
