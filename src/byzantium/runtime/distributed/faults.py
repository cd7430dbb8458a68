"""Fault injection on the process itself (``--fault W:kill@5``): the OS-level faults every rank
kind shares."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any

from .options import FREEZE_SECONDS

__all__ = ["process_fault"]


def process_fault(fault: str | None, who: str, step: int, say: Any) -> None:
    """``kill`` (SIGKILL itself), ``stop`` (SIGSTOP: it hangs until killed) or ``freeze``
    (SIGSTOP, and a child sends SIGCONT ``FREEZE_SECONDS`` later); anything else is left to the
    caller."""
    if fault in ("kill", "stop", "freeze"):
        sig = signal.SIGKILL if fault == "kill" else signal.SIGSTOP
        say(f"{who}: fault injection: {fault} ({sig.name}) at step {step}")
        if fault == "freeze":
            subprocess.Popen(["/bin/sh", "-c", f"sleep {FREEZE_SECONDS}; kill -CONT {os.getpid()}"],
                             start_new_session=True)
        os.kill(os.getpid(), sig)
