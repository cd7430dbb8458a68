"""What every rank of a star job agrees on without exchanging it: the message geometry (sizes
of parameter and message frames) and the session number, both derived from the resolved config.

Each rank builds the run's :class:`~byzantium.runtime.job.Job` from the same config (data set,
model, scheme, placement: deterministic), so nothing is sent over the wire but parameters and
messages, and every per-step random draw agrees with the simulator's.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch
import yaml

from ....config import RunConfig, to_dict
from ...job import Job
from ..frames import wire_numel

__all__ = ["Geometry", "geometry", "default_session"]


@dataclass(frozen=True)
class Geometry:
    """Sizes both ends agree on: ``d`` parameters, the scheme's message shape and dtype, and the
    float32 slots of a parameter frame and of a message frame."""

    d: int
    message_shape: tuple[int, ...]
    message_dtype: torch.dtype
    param_slots: int
    message_slots: int


def geometry(job: Job) -> Geometry:
    """The frame geometry of ``job`` (its scheme must provide the real-message methods)."""
    d = sum(p.numel() for p in job.model.parameters())
    scheme = job.scheme
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


def default_session(cfg: RunConfig, port: int | str) -> int:
    """A session number every rank derives alike from the resolved config and the rendezvous port
    (the launcher passes a random one instead)."""
    text = yaml.safe_dump(to_dict(cfg), sort_keys=True) + f"|{port}"
    return zlib.crc32(text.encode()) | 1
