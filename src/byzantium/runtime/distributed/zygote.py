"""A pre-imported process that forks ranks on request (fast local start-up).

Importing torch costs each rank 1-3 s of CPU; a local job of 1 + 15 ranks would spend most of its
start-up importing the same modules. The launcher therefore starts one *zygote* (a plain
subprocess running :func:`_serve`) that imports torch and this
package once, runs no torch operation and starts no thread, and then forks one child per rank.
Each child is exactly a rank started by ``python -m byzantium.runtime.distributed serve|work``
(same argument parsing, same code, its own PID, stdout/stderr to its log file, the rank's
environment); the zygote only reports PIDs and exit codes.

Protocol on the zygote's stdin/stdout, one JSON object per line::

    -> {"id": 1, "argv": [...], "env": {...}, "log": "path"}    spawn a rank
    <- {"id": 1, "pid": 12345}
    <- {"pid": 12345, "rc": 0}                                    a child exited (rc < 0: signal)

The zygote exits when its stdin closes (the launcher is gone or closed it); the launcher still
kills every child and the zygote itself by PID (:meth:`Zygote.close`).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

__all__ = ["Zygote"]


class Zygote:
    """Launcher side: start the zygote, spawn ranks, track their exit codes, kill by PID."""

    def __init__(self, python: str = sys.executable, env: dict[str, str] | None = None) -> None:
        self.python = python
        self.env = dict(os.environ if env is None else env)
        self.proc: subprocess.Popen | None = None
        self._next = 0
        self._cv = threading.Condition()
        self._pids: dict[int, int] = {}
        self._rcs: dict[int, int] = {}
        self._children: set[int] = set()
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> "Zygote":
        if self.proc is not None:
            return self
        src = str(Path(__file__).resolve().parents[3])
        env = {**self.env, "PYTHONUNBUFFERED": "1", "BYZ_DIE_WITH_PARENT": str(os.getpid()),
               "PYTHONPATH": src + os.pathsep + self.env.get("PYTHONPATH", "")}
        self.proc = subprocess.Popen(
            [self.python, "-c", "from byzantium.runtime.distributed.zygote import _serve; _serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, text=True, env=env,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            with self._cv:
                if "id" in msg:
                    self._pids[msg["id"]] = msg["pid"]
                    self._children.add(msg["pid"])
                elif "rc" in msg:
                    self._rcs[msg["pid"]] = msg["rc"]
                self._cv.notify_all()
        with self._cv:  # the zygote is gone: its children were killed with it (PDEATHSIG)
            for pid in self._children:
                self._rcs.setdefault(pid, -signal.SIGKILL)
            self._cv.notify_all()

    def spawn(self, argv: list[str], env: dict[str, str], log: str | Path, timeout: float = 60.0) -> int:
        """Fork a rank running ``python -m byzantium.runtime.distributed *argv`` with ``env``,
        stdout and stderr to ``log``; return its PID."""
        self.start()
        assert self.proc is not None and self.proc.stdin is not None
        with self._lock:
            self._next += 1
            rid = self._next
            self.proc.stdin.write(json.dumps({"id": rid, "argv": argv, "env": env,
                                              "log": str(log)}) + "\n")
            self.proc.stdin.flush()
        with self._cv:
            if not self._cv.wait_for(lambda: rid in self._pids or not self.alive(), timeout):
                raise RuntimeError(f"Zygote.spawn: no PID within {timeout} s")
            if rid not in self._pids:
                raise RuntimeError("Zygote.spawn: the zygote died")
            return self._pids[rid]

    def returncode(self, pid: int) -> int | None:
        with self._cv:
            return self._rcs.get(pid)

    def wait(self, pid: int, timeout: float | None = None) -> int | None:
        """The exit code of ``pid`` (negative: killed by that signal), or None on timeout."""
        with self._cv:
            self._cv.wait_for(lambda: pid in self._rcs, timeout)
            return self._rcs.get(pid)

    def kill(self, pid: int) -> None:
        """SIGKILL ``pid`` if it is one of ours and still running."""
        with self._cv:
            if pid not in self._children or pid in self._rcs:
                return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        """Kill every child still running and the zygote itself, by PID; reap the zygote."""
        with self._cv:
            pids = [p for p in self._children if p not in self._rcs]
        for pid in pids:
            self.kill(pid)
        for pid in pids:
            self.wait(pid, timeout=5.0)
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    os.kill(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait(timeout=10.0)
            for fh in (self.proc.stdin, self.proc.stdout):
                try:
                    fh and fh.close()
                except Exception:  # noqa: BLE001
                    pass
        if self._reader is not None:
            self._reader.join(timeout=5.0)

    def __enter__(self) -> "Zygote":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ------------------------------------------------------------------------------ zygote process


def _child(req: dict[str, Any]) -> None:  # pragma: no cover - runs in a forked child
    fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.environ.clear()
    os.environ.update(req["env"])
    os.environ["BYZ_DIE_WITH_PARENT"] = str(os.getppid())
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    from .cli import main

    try:
        rc = main(req["argv"])
    except SystemExit as e:  # argparse errors
        rc = e.code if isinstance(e.code, int) else 2
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        rc = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(rc))


def _serve() -> None:  # pragma: no cover - the zygote process
    from .cli import _die_with_parent

    _die_with_parent()
    # the imports every rank needs, done once here (no torch op runs, no thread starts)
    import torch  # noqa: F401
    import torch.distributed  # noqa: F401

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401  (the server's plot)
    import scipy.optimize  # noqa: F401  (synthetic data sets)
    import scipy.special  # noqa: F401

    from ...training import datasets as data, models, pergrad, split  # noqa: F401
    from .. import simulator  # noqa: F401
    from . import geometry, server, worker  # noqa: F401
    from .byzsgd import server as _bs, worker as _bw  # noqa: F401  (ByzSGD ranks)

    # first-use costs of model building (lazy torch submodules, meta-device init; ~0.6 s) paid
    # once here on a 3-feature toy model: tiny tensors, no parallel region, no thread started
    toy = data.Dataset(name="warm-up", x_train=torch.zeros(4, 3), y_train=torch.zeros(4, dtype=torch.long),
                       x_test=torch.zeros(2, 3), y_test=torch.zeros(2, dtype=torch.long),
                       num_classes=2, input_shape=(3,))
    toy_model = models.build_model("mlp", toy, seed=0, hidden=[2])
    # the first torch optimizer imports torch._dynamo (~3.7 s): every server builds one (the
    # star server's SGD, ByzSGD's learning-rate table)
    torch.optim.SGD(toy_model.parameters(), lr=0.1)

    out = sys.stdout
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin, selectors.EVENT_READ)
    children: set[int] = set()
    buf = ""
    while True:
        for key, _ in sel.select(timeout=0.05):
            chunk = os.read(sys.stdin.fileno(), 65536).decode()
            if not chunk:  # the launcher is gone: take the children down with us
                for pid in children:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                os._exit(0)
            buf += chunk
            while "\n" in buf:
                line, buf = buf.split("\n", 1)
                req = json.loads(line)
                out.flush()
                pid = os.fork()
                if pid == 0:
                    sel.close()
                    _child(req)
                children.add(pid)
                out.write(json.dumps({"id": req["id"], "pid": pid}) + "\n")
                out.flush()
        for pid in list(children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                children.discard(pid)
                continue
            if done:
                children.discard(pid)
                rc = os.waitstatus_to_exitcode(status)
                out.write(json.dumps({"pid": pid, "rc": rc}) + "\n")
                out.flush()


if __name__ == "__main__":  # pragma: no cover
    _serve()
