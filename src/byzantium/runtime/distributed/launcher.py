"""Start a server and K workers on this machine, one subprocess per rank, and clean up by PID.

Not ``torchrun`` / ``mp.spawn(join=True)``: both kill every rank when one dies (measured), and a
worker dying is something the run must survive. Each rank is its own OS process running one
:class:`.ranks.RankSpec` (what ``python -m byzantium.runtime.distributed serve|work`` runs) with
``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR=127.0.0.1`` and a free ``MASTER_PORT`` in its environment
(``env://`` rendezvous), exactly what a rank started by hand on another machine gets.

Start-up: importing torch costs each rank 1-3 s of CPU, and a local job of 1 + 15 ranks would
spend most of its start-up importing the same modules. By default (``start="forkserver"``) the
ranks are forked from :mod:`multiprocessing`'s forkserver, one process per launcher process that
imports :data:`PRELOAD` once (no torch operation, no thread) and forks a child per rank; each
child is a separate process with its own PID and exit code (the forkserver reaps it and reports
the code), and the death of one does not touch the others. ``start="exec"`` starts every rank as
a fresh ``python -m byzantium.runtime.distributed serve|work`` interpreter, exactly as by hand.
As with any :mod:`multiprocessing` start, a forked rank first imports the launcher's main
script (as ``__mp_main__``): a script that calls :func:`launch` must guard it with
``if __name__ == "__main__":``.

The server's output is streamed (progress and events) and saved to ``logs/server.log`` in the run
directory; each worker writes ``logs/worker_<w>.log``. When the server exits, workers get a short
grace period to exit on their STOP frame; every child still running afterwards (a hung or stopped
worker) is killed by its PID, and so is every child when the launcher itself fails or is
interrupted (:meth:`Launch.close`), or when the launcher's interpreter exits with a job still
open. On Linux each rank also asks the kernel to SIGKILL it when its parent dies
(``BYZ_DIE_WITH_PARENT``): an exec rank's parent is the launcher, a forked rank's the forkserver,
which exits when the launcher does; so nothing outlives a killed launcher.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.forkserver  # noqa: F401  (multiprocessing's atexit hook before ours, below)
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any, TextIO

import yaml

from ...config import RunConfig, to_dict
from .options import RuntimeOptions
from .ranks import EXIT_INSUFFICIENT, RankSpec, run_forked

__all__ = ["Launch", "LaunchError", "launch", "free_port", "EXIT_INSUFFICIENT", "PRELOAD",
           "START_METHODS"]

START_METHODS = ("forkserver", "exec")

PRELOAD = (
    "torch", "torch.distributed", "scipy.optimize", "scipy.special",
    "byzantium.config", "byzantium.training.datasets", "byzantium.training.split",
    "byzantium.training.models", "byzantium.training.pergrad", "byzantium.training.results",
    "byzantium.runtime.job", "byzantium.runtime.loop", "byzantium.runtime.simulator",
    "byzantium.runtime.byzsgd_sim",
    "byzantium.runtime.distributed.ranks", "byzantium.runtime.distributed.star.server",
    "byzantium.runtime.distributed.star.worker", "byzantium.runtime.distributed.byzsgd",
    "byzantium.runtime.distributed.forkserver_setup",
)
"""What the forkserver imports before it forks a rank: torch and every module a server or worker
rank needs (the star and the ByzSGD ranks), then :mod:`.forkserver_setup` (first-use costs, a
prompt exit)."""

PACKAGE_DIR = str(Path(__file__).resolve().parents[2])
"""The directory this copy of ``byzantium`` was imported from (a forked rank checks it)."""

JOINED = "workers joined"
"""What the server prints once the rendezvous and the pair groups are complete."""


class LaunchError(RuntimeError):
    """A rank could not be started, exited before the rendezvous, or the server exited with an
    error (``returncode``; the log tail is in the message)."""

    def __init__(self, message: str, returncode: int) -> None:
        super().__init__(message)
        self.returncode = returncode


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Launch:
    """One local job: ``start()``, ``wait()``, ``close()`` (also as a context manager).

    ``start="forkserver"`` (default) forks every rank from the forkserver of this process
    (started by the first job, shared by every later one: one torch import per launcher process,
    not per rank); ``start="exec"`` starts every rank as a fresh
    ``python -m byzantium.runtime.distributed serve|work`` process (``python``), exactly as by
    hand. ``pids`` maps rank -> PID (rank 0 is the server, rank ``w + 1`` worker ``w``;
    ByzSGD: ranks ``0 .. n_ps - 1`` are the servers).
    """

    def __init__(
        self,
        cfg: RunConfig,
        run_dir: str | Path,
        *,
        workers: int | None = None,
        opts: RuntimeOptions | None = None,
        resume: bool = False,
        stream: TextIO | None = None,
        start: str = "forkserver",
        python: str = sys.executable,
        env: dict[str, str] | None = None,
        grace: float = 5.0,
    ) -> None:
        K = cfg.workers if workers is None else workers
        if K < 1:
            raise ValueError(f"Launch: workers must be >= 1, got {K}")
        if start not in START_METHODS:
            raise ValueError(f"Launch: start must be one of {', '.join(START_METHODS)}, got {start!r}")
        if start == "forkserver" and python != sys.executable:
            raise ValueError(f"Launch: python={python!r} needs start='exec' (forked ranks run this "
                             f"interpreter, {sys.executable})")
        if K != cfg.workers:
            import dataclasses

            cfg = dataclasses.replace(cfg, workers=K)
        self.cfg, self.K = cfg, K
        self.run_dir = Path(run_dir)
        self.opts = opts or RuntimeOptions()
        self.resume = resume
        self.stream = stream
        self.start_method = start
        self.python = python
        self.env = dict(os.environ if env is None else env)
        self.grace = grace
        self.procs: dict[int, subprocess.Popen | multiprocessing.process.BaseProcess] = {}
        self._pids: dict[int, int] = {}
        self._files: list[Any] = []
        self._tail: threading.Thread | None = None
        self._tail_stop = threading.Event()
        self.server_lines: list[str] = []
        self.resume_step: int | None = None  # ByzSGD --resume: the step every rank starts at

    @property
    def pids(self) -> dict[int, int]:
        return dict(self._pids)

    @property
    def byzsgd(self) -> bool:
        """ByzSGD runs ``n_ps`` server ranks (``0 .. n_ps - 1``) and no trusted one."""
        return self.cfg.scheme.name == "byzsgd"

    @property
    def servers(self) -> int:
        """Number of server ranks (ranks ``0 .. servers - 1``; workers follow)."""
        return self.cfg.byzsgd.n_ps if self.byzsgd else 1

    def _fault_killed(self, rank: int) -> bool:
        """A server rank the fault plan kills or stops (its exit code is expected)."""
        return self.byzsgd and any(
            f.role == "server" and f.worker == rank and f.kind in ("kill", "stop")
            for f in self.opts.faults)

    def _log_name(self, rank: int) -> str:
        if rank < self.servers:
            return "server.log" if rank == 0 else f"server_{rank}.log"
        return f"worker_{rank - self.servers}.log"

    def start(self) -> "Launch":
        logs = self.run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        cfg_path = logs / "rank_config.yaml"
        cfg_path.write_text(yaml.safe_dump(to_dict(self.cfg), sort_keys=False))
        port = free_port()
        session = secrets.randbits(62) | 1
        servers = self.servers
        world = self.K + servers
        base_env = {**self.env, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                    "WORLD_SIZE": str(world), "PYTHONUNBUFFERED": "1",
                    "PYTHONPATH": str(Path(PACKAGE_DIR).parent) + os.pathsep + self.env.get("PYTHONPATH", "")}
        if self.byzsgd and self.resume:  # every rank resumes from one step (a server quorum's)
            from ..byzsgd_sim import byzsgd_params
            from .byzsgd.checkpoint import resume_step

            quorum = byzsgd_params(self.cfg, self.cfg.attack.q).quorum_ps
            self.resume_step = resume_step(self.run_dir, self.servers, quorum)
        server_log = logs / "server.log"
        server_log.write_text("")
        _open_jobs.add(self)
        try:
            for rank in range(world):
                if rank < servers:
                    spec = RankSpec("serve", str(cfg_path), out=str(self.run_dir),
                                    resume=self.resume and not self.byzsgd,
                                    resume_step=self.resume_step, session=session, opts=self.opts)
                else:
                    spec = RankSpec("work", str(cfg_path), out=str(self.run_dir) if self.byzsgd else None,
                                    resume_step=self.resume_step, session=session, opts=self.opts)
                self._start_rank(rank, spec, {**base_env, "RANK": str(rank)}, logs / self._log_name(rank))
        except BaseException:
            self.close()
            raise
        self._tail = threading.Thread(target=self._follow, args=(server_log,), daemon=True)
        self._tail.start()
        return self

    def _start_rank(self, rank: int, spec: RankSpec, env: dict[str, str], log: Path) -> None:
        """Start one rank (forked or exec'd) writing to ``log``; record its process and PID."""
        try:
            if self.start_method == "forkserver":
                p = _forkserver().Process(target=run_forked, args=(spec, env, str(log), PACKAGE_DIR),
                                          name=f"byzantium-rank-{rank}", daemon=True)
                p.start()
            else:
                env["BYZ_DIE_WITH_PARENT"] = str(os.getpid())
                fh = open(log, "w")
                self._files.append(fh)
                p = subprocess.Popen(
                    [self.python, "-m", "byzantium.runtime.distributed", *spec.argv()], env=env,
                    stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                )
        except Exception as e:  # noqa: BLE001 - reported with the rank; close() ends the others
            how = ("the forkserver could not fork it (the forkserver's own error, if any, is on "
                   "this process's stderr)" if self.start_method == "forkserver"
                   else f"{self.python} -m byzantium.runtime.distributed could not be started")
            raise LaunchError(f"launch: rank {rank} ({log.name}) did not start: {how}: {e!r}; "
                              "every process was killed", 1) from e
        self.procs[rank] = p
        self._pids[rank] = int(p.pid)

    def _follow(self, path: Path) -> None:
        """Stream the server's log as it grows, until the server has exited and all is read."""
        with path.open() as fh:
            partial = ""
            while True:
                chunk = fh.readline()
                if chunk:
                    partial += chunk
                    if partial.endswith("\n"):
                        self.server_lines.append(partial.rstrip("\n"))
                        if self.stream is not None:
                            self.stream.write(partial)
                            self.stream.flush()
                        partial = ""
                    continue
                if self._tail_stop.is_set():
                    if partial:
                        self.server_lines.append(partial)
                    return
                time.sleep(0.05)

    # ------------------------------------------------------------------ process control
    def returncode(self, rank: int) -> int | None:
        """Exit code of ``rank`` (negative: killed by that signal), None while it runs."""
        p = self.procs[rank]
        return p.poll() if isinstance(p, subprocess.Popen) else p.exitcode

    def returncodes(self) -> dict[int, int | None]:
        return {r: self.returncode(r) for r in self._pids}

    def _wait_rank(self, rank: int, timeout: float | None) -> int | None:
        p = self.procs[rank]
        if isinstance(p, subprocess.Popen):
            try:
                return p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return None
        p.join(timeout)
        return p.exitcode

    def kill(self, rank: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to ``rank`` by its PID (if it still runs)."""
        if self.returncode(rank) is None:
            try:
                os.kill(self._pids[rank], sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the server(s) (at most ``timeout`` seconds: then everything is killed and
        :class:`TimeoutError` raised), give the workers ``grace`` seconds, kill the rest by PID.
        Returns the server's exit code (ByzSGD: the first nonzero code among the servers that the
        fault plan does not kill or stop; those are not waited for). A rank that exits before the
        rendezvous completed (which would leave the others waiting ``connect_timeout``) aborts
        the job with :class:`LaunchError`."""
        end = None if timeout is None else time.monotonic() + timeout
        servers = list(range(self.servers))
        while True:
            rcs = {r: self._wait_rank(r, 0.2 if r == 0 else 0.0) for r in servers}
            if all(c is not None for r, c in rcs.items() if not self._fault_killed(r)):
                break
            if end is not None and time.monotonic() > end:
                self.close()
                raise TimeoutError(f"Launch.wait: the server(s) did not finish within {timeout} s; "
                                   "every process was killed")
            if not any(JOINED in line for line in self.server_lines):
                early = {r: c for r, c in self.returncodes().items() if r and c is not None}
                if early:
                    self.close()
                    r = min(early)
                    log = self.run_dir / "logs" / self._log_name(r)
                    tail = log.read_text()[-2000:] if log.exists() else ""
                    if not tail.strip():
                        tail = ("(empty: the rank ended before its entry ran; a forked rank's "
                                "start-up error is on the launcher's stderr)")
                    raise LaunchError(
                        f"launch: rank(s) {sorted(early)} exited (codes {early}) before the "
                        f"rendezvous; every process was killed. {log}:\n{tail}", 1)
        # the job's code: the first failing server among those the fault plan did not kill
        rc = next((c for r, c in sorted(rcs.items()) if c != 0 and not self._fault_killed(r)), 0)
        end_grace = time.monotonic() + self.grace
        for rank in self._pids:
            if rank >= self.servers:
                self._wait_rank(rank, max(0.0, end_grace - time.monotonic()))
        self.close()
        return rc

    def close(self) -> None:
        """Kill (SIGKILL, by PID) every rank still running and reap it. Idempotent."""
        for rank in self._pids:
            self.kill(rank)
        for rank in self._pids:
            self._wait_rank(rank, 10.0)
        _open_jobs.discard(self)
        self._tail_stop.set()
        if self._tail is not None:
            self._tail.join(timeout=5.0)
        for fh in self._files:
            try:
                fh.close()
            except Exception:  # noqa: BLE001
                pass
        self._files = []

    def __enter__(self) -> "Launch":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _forkserver() -> multiprocessing.context.BaseContext:
    """The forkserver context, its preload set (it takes effect when the forkserver starts: at
    the first forked rank of this process; later jobs reuse that forkserver)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(PRELOAD))
    return ctx


_open_jobs: "weakref.WeakSet[Launch]" = weakref.WeakSet()


@atexit.register
def _close_open_jobs() -> None:
    """At interpreter exit, kill the ranks of every job not closed. Registered after
    multiprocessing's own exit hook (imported above), so it runs first: that hook would otherwise
    wait for a stopped rank forever."""
    for job in list(_open_jobs):
        job.close()


def launch(
    cfg: RunConfig,
    run_dir: str | Path,
    *,
    workers: int | None = None,
    opts: RuntimeOptions | None = None,
    resume: bool = False,
    stream: TextIO | None = None,
    timeout: float | None = None,
    start: str = "forkserver",
) -> dict[str, Any]:
    """Run the job to the end and return ``summary.json``; raise :class:`LaunchError` if the
    server failed (``returncode`` 3: too few workers left, a checkpoint and the summary exist)."""
    import json

    with Launch(cfg, run_dir, workers=workers, opts=opts, resume=resume, stream=stream,
                start=start) as job:
        rc = job.wait(timeout=timeout)
        tail = "\n".join(job.server_lines[-15:])
        byzsgd, jcfg = job.byzsgd, job.cfg
    if byzsgd:  # no single server: merge the ranks' outputs (also after a failure)
        from .byzsgd import merge_run

        summary = merge_run(jcfg, Path(run_dir))
        if rc != 0:
            raise LaunchError(f"launch: a ByzSGD server exited with code {rc}:\n{tail}\n"
                              f"errors: {summary['errors']}", rc)
        return summary
    if rc != 0:
        raise LaunchError(f"launch: the server exited with code {rc}:\n{tail}", rc)
    return json.loads((Path(run_dir) / "summary.json").read_text())
