"""What one rank runs: a :class:`RankSpec` (serve or work, on a config file) and the process entry
that runs it and ends the process.

Both ways a rank starts come here: ``byzantium serve|work`` (the command line, :mod:`.cli`, for a
rank started by hand or by the launcher's ``start="exec"``) and a rank forked by the launcher's
forkserver (:func:`run_forked`). This module imports neither the CLI nor the launcher, and the
heavy modules (torch, the server and worker loops) only inside the functions that run a rank, so
the launcher can import it cheaply and the forkserver child finds everything preloaded.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .options import RuntimeOptions

__all__ = ["RankSpec", "EXIT_INSUFFICIENT", "ROLES", "run_rank", "rank_process", "run_forked",
           "die_with_parent", "default_run_dir"]

EXIT_INSUFFICIENT = 3
"""Exit code of a server stopped because too few workers (ByzSGD: servers) remain."""

ROLES = ("serve", "work")


@dataclass(frozen=True)
class RankSpec:
    """One rank: ``role`` ``serve`` (a server: rank 0, or ByzSGD ranks ``0 .. n_ps - 1``) or
    ``work`` (a worker), on the YAML ``config`` with ``overrides`` (``key=value``).

    ``out``: the run directory (servers; ByzSGD workers write ``workers/w<j>.json`` there);
    ``resume``: a server continues from the last checkpoint; ``resume_step``: ByzSGD, the step
    every rank starts at; ``session``: the number stamped into every frame (None: derived from the
    config and ``MASTER_PORT``). ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``
    come from the environment (``env://``)."""

    role: str
    config: str
    overrides: tuple[str, ...] = ()
    out: str | None = None
    resume: bool = False
    resume_step: int | None = None
    session: int | None = None
    opts: RuntimeOptions = field(default_factory=RuntimeOptions)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"RankSpec: role must be one of {', '.join(ROLES)}, got {self.role!r}")
        if self.role == "work" and self.resume:
            raise ValueError("RankSpec: resume is a server flag (a worker has no checkpoint)")

    def argv(self) -> list[str]:
        """The ``python -m byzantium.runtime.distributed`` arguments that run this rank."""
        args = [self.role, self.config]
        for o in self.overrides:
            args += ["--set", o]
        if self.out is not None:
            args += ["--out", self.out]
        if self.resume:
            args.append("--resume")
        if self.resume_step is not None:
            args += ["--resume-step", str(self.resume_step)]
        if self.session is not None:
            args += ["--session", str(self.session)]
        return args + self.opts.to_args()


def default_run_dir(cfg) -> Path:
    """``<out_dir>/<name>/<scheme>``: where a run goes when no ``--out`` is given."""
    return Path(cfg.out_dir) / cfg.name / cfg.scheme.display


def _env_int(name: str) -> int:
    if name not in os.environ:
        raise ValueError(f"environment variable {name} is not set (env:// rendezvous needs RANK, "
                         "WORLD_SIZE, MASTER_ADDR, MASTER_PORT)")
    return int(os.environ[name])


def _session(spec: RankSpec, cfg) -> int:
    from .star.geometry import default_session

    if spec.session is not None:
        return spec.session
    return default_session(cfg, os.environ.get("MASTER_PORT", ""))


def _say(message: str) -> None:
    print(message, flush=True)


def _serve(spec: RankSpec, cfg, rank: int, world: int) -> int:
    out = Path(spec.out) if spec.out else default_run_dir(cfg)
    if cfg.scheme.name == "byzsgd":
        from .byzsgd import QuorumError, run_byzsgd_server
        from .byzsgd.checkpoint import resume_step

        R = spec.resume_step
        if R is None and spec.resume:
            from ..byzsgd_sim import byzsgd_params

            R = resume_step(out, cfg.byzsgd.n_ps, byzsgd_params(cfg, cfg.attack.q).quorum_ps)
        try:
            run_byzsgd_server(cfg, out, rank=rank, world_size=world, session=_session(spec, cfg),
                              opts=spec.opts, resume_step=R, say=_say)
        except QuorumError as e:
            print(f"byzantium: error: {e}", file=sys.stderr, flush=True)
            return EXIT_INSUFFICIENT
        return 0
    from .star.server import InsufficientWorkersError, run_server

    if rank != 0:
        raise ValueError(f"serve: the server is rank 0, got RANK={rank}")
    if cfg.workers != world - 1:
        raise ValueError(f"serve: the config has workers={cfg.workers} but WORLD_SIZE={world} "
                         f"gives {world - 1} worker ranks")
    try:
        run_server(cfg, out, world_size=world, session=_session(spec, cfg), opts=spec.opts,
                   resume=spec.resume, say=_say)
    except InsufficientWorkersError as e:
        print(f"byzantium: error: {e}", file=sys.stderr, flush=True)
        return EXIT_INSUFFICIENT
    return 0


def _work(spec: RankSpec, cfg, rank: int, world: int) -> int:
    if cfg.scheme.name == "byzsgd":
        from .byzsgd import run_byzsgd_worker

        return run_byzsgd_worker(cfg, rank=rank, world_size=world, session=_session(spec, cfg),
                                 opts=spec.opts, run_dir=Path(spec.out) if spec.out else None,
                                 start_step=spec.resume_step or 0)
    from .star.worker import run_worker

    return run_worker(cfg, rank=rank, world_size=world, session=_session(spec, cfg), opts=spec.opts)


def run_rank(spec: RankSpec) -> int:
    """Run the rank ``spec`` describes in this process; its exit code (0: done,
    :data:`EXIT_INSUFFICIENT`: a server stopped with too few peers left)."""
    from ...config import load_config

    cfg = load_config(spec.config, list(spec.overrides))
    rank, world = _env_int("RANK"), _env_int("WORLD_SIZE")
    fn = _serve if spec.role == "serve" else _work
    return int(fn(spec, cfg, rank, world) or 0)


def rank_process(spec: RankSpec) -> None:
    """Run one rank and end the process with ``os._exit``: gloo threads may still be blocked on a
    peer that is gone, and interpreter shutdown must not wait for (or crash on) them. Errors in
    the config or the environment exit 2, other failures 1 (with a traceback)."""
    die_with_parent()
    try:
        if spec.opts.threads > 0:
            import torch

            torch.set_num_threads(spec.opts.threads)
        rc = run_rank(spec)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"byzantium: error: {e}", file=sys.stderr, flush=True)
        rc = 2 if isinstance(e, ValueError) else 1
    except BaseException:  # noqa: BLE001 - report, then still exit hard
        import traceback

        traceback.print_exc()
        rc = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


def die_with_parent() -> None:
    """With ``BYZ_DIE_WITH_PARENT`` (the parent's PID) set: ask Linux to SIGKILL this process when
    its parent dies, and exit at once if that parent is already gone."""
    parent = os.environ.get("BYZ_DIE_WITH_PARENT")
    if not parent or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort; the launcher still kills by PID
        return
    if os.getppid() != int(parent):  # the parent died before prctl took effect
        os._exit(1)


def _redirect(log: str) -> None:
    """stdout and stderr (file descriptors 1 and 2 and the Python objects) to ``log``."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)


def _leave_forkserver() -> None:
    """Close this child's copy of the forkserver's "alive" pipe. Every forked child inherits one,
    and the forkserver only exits (taking its children down with it, see :func:`die_with_parent`)
    once every copy is closed: a rank holding one would outlive a killed launcher."""
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    fd = getattr(server, "_forkserver_alive_fd", None)
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
        server._forkserver_alive_fd = None


def run_forked(spec: RankSpec, env: dict[str, str], log: str, package_dir: str) -> None:
    """The entry of a rank forked by the launcher's forkserver: output to ``log``, the rank's
    environment ``env``, killed with the forkserver (which exits when the launcher does), then
    :func:`rank_process`. ``package_dir``: where the launcher imported this package from; a
    forkserver that preloaded another copy is refused (exit 2), it would run other code."""
    _redirect(log)
    os.environ.clear()
    os.environ.update(env)
    os.environ["BYZ_DIE_WITH_PARENT"] = str(os.getppid())
    die_with_parent()  # while this child still holds the alive pipe: the forkserver is up
    _leave_forkserver()
    here = str(Path(__file__).resolve().parents[2])
    if here != package_dir:
        print(f"byzantium: error: the forkserver imported byzantium from {here}, the launcher from "
              f"{package_dir}; start the launcher with PYTHONPATH naming the launcher's copy",
              file=sys.stderr, flush=True)
        os._exit(2)
    rank_process(spec)
