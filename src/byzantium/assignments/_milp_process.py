"""Solve 0/1 integer programs with HiGHS (``scipy.optimize.milp``) in a separate process.

HiGHS as shipped with scipy 1.17 crashes the whole interpreter (SIGSEGV) on some of the worst-case
programs of :func:`~byzantium.assignments.adversary.worst_case` (MOLS l=8 r=5, l=9 r=4 and r=5,
presolve on or off; an upstream bug of the same kind as scipy/scipy#22188). A crash there must not
take the caller's training run or notebook with it, so the solver runs in one long-lived child
process (started on first use, reused: starting Python and scipy costs about 0.4 s), fed
length-prefixed pickles over its stdin/stdout. If the child dies, :func:`solve` raises
:class:`SolverCrashed` naming the signal, and the next call starts a fresh child.

Run as a script (``python _milp_process.py``) this file is the child: it imports only numpy and
scipy, never this package.
"""

from __future__ import annotations

import atexit
import pickle
import signal
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

__all__ = ["SolverCrashed", "solve"]

_HEADER = struct.Struct("<Q")


class SolverCrashed(RuntimeError):
    """The HiGHS child process died while solving (a crash inside the solver)."""


def _read(stream: Any) -> Any:
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise EOFError
    (n,) = _HEADER.unpack(head)
    body = stream.read(n)
    if len(body) < n:
        raise EOFError
    return pickle.loads(body)


def _write(stream: Any, obj: Any) -> None:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(body)) + body)
    stream.flush()


class _Child:
    def __init__(self) -> None:
        # stderr goes to a file, not a pipe: nobody reads it while the child lives, and a full
        # pipe would block the child; it is read back after a crash
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve())], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.err)

    def stderr_tail(self) -> str:
        self.err.seek(0)
        text = self.err.read().decode(errors="replace").strip()
        return text.splitlines()[-1] if text else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.err):
            if stream is not None:
                stream.close()

    def shut(self) -> None:
        """At exit: end of input makes the child return; kill it if it does not."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.close()


_lock = threading.Lock()
_child: _Child | None = None


@atexit.register
def _shut_child() -> None:
    if _child is not None:
        _child.shut()


def solve(c: Any, integrality: Any, lb_x: Any, ub_x: Any, A: Any, lb: Any, ub: Any,
          options: dict[str, Any]) -> dict[str, Any]:
    """``milp(c, integrality, Bounds(lb_x, ub_x), LinearConstraint(A, lb, ub), options)`` in the
    child process; returns ``{"x", "status", "message"}`` (``x`` None when no solution)."""
    global _child
    with _lock:
        if _child is not None and not _child.alive():  # died between two solves
            _child.close()
            _child = None
        if _child is None:
            _child = _Child()
        child = _child
        try:
            assert child.proc.stdin is not None and child.proc.stdout is not None
            _write(child.proc.stdin, (c, integrality, lb_x, ub_x, A, lb, ub, options))
            return _read(child.proc.stdout)
        except (EOFError, BrokenPipeError, OSError):
            _child = None
            if child.alive():
                child.proc.kill()
            rc = child.proc.wait()
            err = child.stderr_tail()
            child.close()
            how = (f"signal {signal.Signals(-rc).name}" if rc is not None and rc < 0
                   else f"exit code {rc}")
            raise SolverCrashed(
                f"the HiGHS solver process died ({how}) on this integer program"
                + (f": {err}" if err else "")) from None
        except BaseException:  # interrupted mid-exchange: the child's state is unknown, drop it
            _child = None
            child.close()
            raise


def _serve() -> None:
    import numpy as np
    from scipy.optimize import Bounds, LinearConstraint, milp

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            c, integrality, lb_x, ub_x, A, lb, ub, options = _read(inp)
        except EOFError:
            return
        res = milp(c, integrality=integrality, bounds=Bounds(lb_x, ub_x),
                   constraints=LinearConstraint(A, lb, ub), options=options)
        x = None if res.x is None else np.asarray(res.x)
        _write(out, {"x": x, "status": int(res.status), "message": str(res.message)})


if __name__ == "__main__":
    _serve()
