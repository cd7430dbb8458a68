"""Start a server and K workers on this machine, one subprocess per rank, and clean up by PID.

Not ``torchrun`` / ``mp.spawn(join=True)``: both kill every rank when one dies (measured), and a
worker dying is something the run must survive. Each rank is its own process running
``python -m byzantium.runtime.distributed serve|work`` with ``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR=127.0.0.1`` and a free ``MASTER_PORT`` in its environment (``env://``
rendezvous), exactly what a rank started by hand on another machine gets; by default the ranks
are forked from one pre-imported :mod:`.zygote` (one torch import per job, not per rank), or
started as fresh interpreters (``start="exec"``).

The server's output is streamed (progress and events) and saved to ``logs/server.log`` in the run
directory; each worker writes ``logs/worker_<w>.log``. When the server exits, workers get a short
grace period to exit on their STOP frame; every child still running afterwards (a hung or stopped
worker) is killed by its PID, and so is every child when the launcher itself fails or is
interrupted (:meth:`Launch.close`); on Linux each rank also asks the kernel to SIGKILL it when
its parent dies (``BYZ_DIE_WITH_PARENT``, set by the launcher), so nothing outlives a killed launcher.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import yaml

from ...config import RunConfig, to_dict
from .options import RuntimeOptions
from .zygote import Zygote

__all__ = ["Launch", "LaunchError", "launch", "free_port", "EXIT_INSUFFICIENT"]

EXIT_INSUFFICIENT = 3
"""Exit code of a server stopped because too few workers remain (checkpoint written)."""

JOINED = "workers joined"
"""What the server prints once the rendezvous and the pair groups are complete."""


class LaunchError(RuntimeError):
    """The server exited with an error (``returncode``; its log tail is in the message)."""

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

    ``start="zygote"`` (default) forks the ranks from a pre-imported :class:`.zygote.Zygote`
    (one torch import per job instead of one per rank; pass ``zygote=`` to share one between
    jobs, e.g. in tests); ``start="exec"`` starts every rank as a fresh
    ``python -m byzantium.runtime.distributed serve|work`` process, exactly as by hand.
    ``pids`` maps rank -> PID (rank 0 is the server, rank ``w + 1`` worker ``w``).
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
        start: str = "zygote",
        zygote: Zygote | None = None,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
        grace: float = 5.0,
    ) -> None:
        K = cfg.workers if workers is None else workers
        if K < 1:
            raise ValueError(f"Launch: workers must be >= 1, got {K}")
        if start not in ("zygote", "exec"):
            raise ValueError(f"Launch: start must be 'zygote' or 'exec', got {start!r}")
        if K != cfg.workers:
            import dataclasses

            cfg = dataclasses.replace(cfg, workers=K)
        self.cfg, self.K = cfg, K
        self.run_dir = Path(run_dir)
        self.opts = opts or RuntimeOptions()
        self.resume = resume
        self.stream = stream
        self.start_method = "zygote" if zygote is not None else start
        self.python = python
        self.env = dict(os.environ if env is None else env)
        self.grace = grace
        self._own_zygote = zygote is None and self.start_method == "zygote"
        self.zygote = zygote
        self.procs: dict[int, subprocess.Popen] = {}
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

    def start(self) -> "Launch":
        logs = self.run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        cfg_path = logs / "rank_config.yaml"
        cfg_path.write_text(yaml.safe_dump(to_dict(self.cfg), sort_keys=False))
        port = free_port()
        session = secrets.randbits(62) | 1
        servers = self.servers
        world = self.K + servers
        src = str(Path(__file__).resolve().parents[3])
        base_env = {**self.env, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                    "WORLD_SIZE": str(world), "PYTHONUNBUFFERED": "1",
                    "PYTHONPATH": src + os.pathsep + self.env.get("PYTHONPATH", "")}
        common = ["--session", str(session), *self.opts.to_args()]
        if self.byzsgd and self.resume:  # every rank resumes from one step (a server quorum's)
            from ..byzsgd_sim import byzsgd_params
            from .byzsgd.checkpoint import resume_step

            quorum = byzsgd_params(self.cfg, self.cfg.attack.q).quorum_ps
            self.resume_step = resume_step(self.run_dir, self.servers, quorum)
            common += ["--resume-step", str(self.resume_step)]
        server_log = logs / "server.log"
        server_log.write_text("")
        try:
            if self.start_method == "zygote" and self.zygote is None:
                self.zygote = Zygote(self.python, self.env).start()
            for rank in range(world):
                env = {**base_env, "RANK": str(rank)}
                if rank < servers:
                    argv = ["serve", str(cfg_path), "--out", str(self.run_dir), *common]
                    if self.resume and not self.byzsgd:
                        argv.append("--resume")
                    log = server_log if rank == 0 else logs / f"server_{rank}.log"
                else:
                    argv = ["work", str(cfg_path), *common]
                    if self.byzsgd:
                        argv += ["--out", str(self.run_dir)]
                    log = logs / f"worker_{rank - servers}.log"
                if self.zygote is not None:
                    self._pids[rank] = self.zygote.spawn(argv, env, log)
                else:
                    env["BYZ_DIE_WITH_PARENT"] = str(os.getpid())
                    fh = open(log, "w")
                    self._files.append(fh)
                    p = subprocess.Popen(
                        [self.python, "-m", "byzantium.runtime.distributed", *argv], env=env,
                        stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    )
                    self.procs[rank] = p
                    self._pids[rank] = p.pid
        except BaseException:
            self.close()
            raise
        self._tail = threading.Thread(target=self._follow, args=(server_log,), daemon=True)
        self._tail.start()
        return self

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
        if rank in self.procs:
            return self.procs[rank].poll()
        return self.zygote.returncode(self._pids[rank]) if self.zygote is not None else None

    def returncodes(self) -> dict[int, int | None]:
        return {r: self.returncode(r) for r in self._pids}

    def _wait_rank(self, rank: int, timeout: float | None) -> int | None:
        if rank in self.procs:
            try:
                return self.procs[rank].wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return None
        assert self.zygote is not None
        return self.zygote.wait(self._pids[rank], timeout)

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
        fault plan does not kill or stop; those are not waited for). A rank that exits before the rendezvous completed
        (which would leave the others waiting ``connect_timeout``) aborts the job with
        :class:`LaunchError`."""
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
                    name = f"server_{r}.log" if r < self.servers else f"worker_{r - self.servers}.log"
                    log = self.run_dir / "logs" / name
                    tail = log.read_text()[-2000:] if log.exists() else ""
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
        """Kill (SIGKILL, by PID) every rank still running and reap it; end an own zygote.
        Idempotent."""
        for rank in self._pids:
            self.kill(rank)
        for rank in self._pids:
            self._wait_rank(rank, 10.0)
        if self._own_zygote and self.zygote is not None:
            self.zygote.close()
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


def launch(
    cfg: RunConfig,
    run_dir: str | Path,
    *,
    workers: int | None = None,
    opts: RuntimeOptions | None = None,
    resume: bool = False,
    stream: TextIO | None = None,
    timeout: float | None = None,
    start: str = "zygote",
    zygote: Zygote | None = None,
) -> dict[str, Any]:
    """Run the job to the end and return ``summary.json``; raise :class:`LaunchError` if the
    server failed (``returncode`` 3: too few workers left, a checkpoint and the summary exist)."""
    import json

    with Launch(cfg, run_dir, workers=workers, opts=opts, resume=resume, stream=stream,
                start=start, zygote=zygote) as job:
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
