"""The distributed runtime: a real parameter server (rank 0) and K worker processes over
``torch.distributed`` (gloo, point-to-point only), running the same scheme objects as the
simulator.

* :mod:`.frames`: fixed-size float32 frames (header, payload, trailer stamp) and their validation;
* :mod:`.transport`: pair groups, receive threads, the latest-only parameter mailbox;
* :mod:`.server`: the training loop over real messages (arrival policies, eviction, guarantees);
* :mod:`.worker`: honest and Byzantine workers, straggler sleeps, fault injection;
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
