"""The distributed runtime: real processes over ``torch.distributed`` (gloo, point-to-point only),
running the same Job, scheme objects and training loop as the simulator.

* :mod:`.frames`: fixed-size float32 frames (header, payload, trailer stamp) and their validation;
* :mod:`.transport` (star) and :mod:`.mesh` (ByzSGD): pair groups, receive threads, latest-only
  outboxes: the messaging layer, behind these two modules;
* :mod:`.star`: the parameter server (its step for the one loop: arrival policies, eviction,
  guarantees), honest and Byzantine workers, the frame geometry;
* :mod:`.byzsgd`: ByzSGD's replicated server and worker ranks, their inbox and layout;
* :mod:`.faults` and :mod:`.options`: fault injection (one registry entry per kind), run options;
* :mod:`.ranks`: what one rank runs (serve or work), the entry of every rank process;
* :mod:`.launcher`: one process per rank on this machine (forked from a forkserver that preloaded
  torch, or exec'd), everything killed by PID at the end;
* :mod:`.cli`: ``byzantium launch | serve | work``.

See ``shared/DESIGN.md`` ("Distributed runtime") for the measured gloo behaviour behind each
choice.
"""

from .frames import REASONS, FrameRejected, encode_frame, validate_frame
from .launcher import Launch, LaunchError, launch
from .options import Fault, RuntimeOptions, parse_fault

__all__ = [
    "REASONS",
    "FrameRejected",
    "encode_frame",
    "validate_frame",
    "Launch",
    "LaunchError",
    "launch",
    "Fault",
    "RuntimeOptions",
    "parse_fault",
]
