"""Fault injection (``--fault W:KIND@STEPS``, ``--fault psS:KIND@STEPS``): one registry entry per
kind says who may inject it and what it does, so a new fault is one entry here.

* *frame faults* (workers): the frame sent instead of the valid one, same physical size (a
  wrong declared length, a stale step, a forged stamp, another sender, NaN/Inf/huge payloads), or
  a valid frame cut short on the wire (``short``);
* *process faults* (workers and ByzSGD servers): the process SIGKILLs or SIGSTOPs itself, or
  freezes for ``FREEZE_SECONDS`` and goes on.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ...registry import Registry
from .frames import MESSAGE, encode_frame, stamp, to_wire

__all__ = ["FaultKind", "FAULTS", "OptionsError", "FREEZE_SECONDS", "process_fault",
           "faulty_frame", "fault_kinds"]

FREEZE_SECONDS = 2.0


class OptionsError(ValueError):
    """A runtime option or fault specification is malformed."""


FrameFn = Callable[..., torch.Tensor]
"""``frame(msg, step=, rank=, slots=, session=, aux=) -> frame`` a worker sends instead."""


@dataclass(frozen=True)
class FaultKind:
    name: str
    summary: str
    roles: tuple[str, ...]
    frame: FrameFn | None = None
    """Frame faults: the frame sent instead of the valid one."""
    signal: int | None = None
    """Process faults: the signal the process sends itself."""
    resume_after: float | None = None
    """``freeze``: seconds after which a child sends SIGCONT."""
    truncate: bool = False
    """``short``: the valid frame, cut to half its size on the wire."""


FAULTS: Registry[FaultKind] = Registry("fault", error=OptionsError)


def _fault(name: str, summary: str, roles: tuple[str, ...] = ("worker",), **kw: Any) -> None:
    FAULTS.add(name, FaultKind(name, summary, roles, **kw))


def _valid(msg, *, step, rank, slots, session, aux, wire=None) -> torch.Tensor:
    wire = to_wire(msg) if wire is None else wire
    return encode_frame(MESSAGE, step, rank, wire, capacity=slots, session=session, aux=aux)


def _filled(value: float) -> FrameFn:
    def frame(msg, **kw) -> torch.Tensor:
        return _valid(torch.full_like(msg, value), **kw)

    return frame


def _length(msg, *, step, rank, slots, session, aux) -> torch.Tensor:
    return encode_frame(MESSAGE, step, rank, to_wire(msg)[:-1], capacity=slots, session=session, aux=aux)


def _stale(msg, *, step, rank, slots, session, aux) -> torch.Tensor:
    return _valid(msg, step=step - 1, rank=rank, slots=slots, session=session, aux=aux)


def _sender(msg, *, step, rank, slots, session, aux) -> torch.Tensor:
    return _valid(msg, step=step, rank=rank + 1, slots=slots, session=session, aux=aux)


def _stamp(msg, *, step, rank, slots, session, aux) -> torch.Tensor:
    wire = to_wire(msg)
    frame = _valid(msg, step=step, rank=rank, slots=slots, session=session, aux=aux, wire=wire)
    frame.view(torch.int32)[-1] = stamp(session ^ 0x5A5A5A5A, MESSAGE, step, rank, wire.numel())
    return frame


_fault("short", "send a frame shorter than the agreed size (payload cut, no trailer)", truncate=True)
_fault("length", "declare a payload length that differs from the scheme's message length", frame=_length)
_fault("stale", "stamp the frame (validly) with the previous step", frame=_stale)
_fault("stamp", "a trailer stamp that does not match the header (forged)", frame=_stamp)
_fault("sender", "claim to be another worker in the header (validly stamped)", frame=_sender)
_fault("nan", "NaN payload", frame=_filled(float("nan")))
_fault("inf", "+Inf payload", frame=_filled(float("inf")))
_fault("garbage", "huge finite values (passes validation; the scheme must cope)", frame=_filled(1e30))
_fault("kill", "SIGKILL itself before computing the step", ("worker", "server"),
       signal=signal.SIGKILL)
_fault("stop", "SIGSTOP itself before computing the step (hangs until killed)", ("worker", "server"),
       signal=signal.SIGSTOP)
_fault("freeze", f"SIGSTOP itself for {FREEZE_SECONDS:g} s, then go on (a machine that froze)",
       ("worker", "server"), signal=signal.SIGSTOP, resume_after=FREEZE_SECONDS)


def fault_kinds(role: str) -> tuple[str, ...]:
    """The fault kinds a ``role`` (``worker`` or ``server``) may inject."""
    return tuple(name for name, k in FAULTS.items() if role in k.roles)


def process_fault(fault: str | None, who: str, step: int, say: Any) -> None:
    """Apply a process fault to this process (``kill``, ``stop``, ``freeze``); frame faults and
    None are left to the caller."""
    kind = FAULTS.get(fault) if fault else None
    if kind is None or kind.signal is None:
        return
    sig = signal.Signals(kind.signal)
    say(f"{who}: fault injection: {fault} ({sig.name}) at step {step}")
    if kind.resume_after is not None:
        subprocess.Popen(["/bin/sh", "-c", f"sleep {kind.resume_after}; kill -CONT {os.getpid()}"],
                         start_new_session=True)
    os.kill(os.getpid(), sig)


def faulty_frame(fault: str | None, msg: torch.Tensor, *, step: int, rank: int, slots: int,
                 session: int, aux: float) -> torch.Tensor:
    """The frame a worker sends at a step with ``fault`` (the valid frame when the fault is not
    a frame fault, e.g. None, a process fault or ``short``)."""
    kind = FAULTS.get(fault) if fault else None
    fn = kind.frame if kind is not None and kind.frame is not None else _valid
    return fn(msg, step=step, rank=rank, slots=slots, session=session, aux=aux)
