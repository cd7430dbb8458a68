"""``byzantium launch | serve | work``: the distributed runtime's commands.

    byzantium launch CONFIG --workers K [--set k=v ...] [--out DIR] [--resume] [runtime flags]
        server + K workers on this machine (one subprocess per rank, loopback rendezvous)
    byzantium serve CONFIG [--set ...] [--out DIR] [--resume] [runtime flags]
        rank 0 of a job started by hand (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT in the env)
    byzantium work CONFIG [--set ...] [runtime flags]
        one worker rank of such a job
    byzantium byzsgd-merge CONFIG [--out DIR]
        ByzSGD (``scheme.name: byzsgd``, ranks 0..n_ps-1 serve, the rest work): merge the servers'
        and workers' outputs into one run directory (``launch`` does this itself)

Every rank of a job must get the same CONFIG and ``--set`` overrides (they define the data, the
model, the scheme and the seed) and the same ``--session`` number (default: derived from the
config and MASTER_PORT, so identical commands agree). :func:`add_launch_parsers` adds the three
subcommands to the ``byzantium`` parser; ``python -m byzantium.runtime.distributed`` runs them
directly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from .ranks import EXIT_INSUFFICIENT

__all__ = ["add_launch_parsers", "main", "rank_spec", "EXIT_INSUFFICIENT"]


def _runtime_flags(p: argparse.ArgumentParser) -> None:
    from .options import FAULT_KINDS, SERVER_FAULT_KINDS

    g = p.add_argument_group("runtime")
    g.add_argument("--evict-timeout", type=float, default=30.0, metavar="S",
                   help="evict a worker that leaves a request unanswered this long (default 30)")
    g.add_argument("--deadline", type=float, default=None, metavar="S",
                   help="wait_all: go on without the missing messages after S seconds; ByzSGD sync: "
                        "the bounded message delay (default 1)")
    g.add_argument("--time-scale", type=float, default=0.01, metavar="X",
                   help="real seconds slept per simulated second of straggler delay (default 0.01)")
    g.add_argument("--connect-timeout", type=float, default=120.0, metavar="S",
                   help="rendezvous timeout (default 120)")
    g.add_argument("--gloo-timeout", type=float, default=1800.0, metavar="S",
                   help="gloo's timeout on every pair group, a backstop (default 1800)")
    g.add_argument("--device", default="auto", help="worker compute device: auto, cpu, cuda[:i]")
    g.add_argument("--progress-every", type=int, default=10, metavar="N",
                   help="server progress line every N steps (default 10)")
    g.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch threads per rank (0: torch's default; default 1)")
    g.add_argument("--fault", action="append", default=[], metavar="W:KIND@STEPS",
                   help="fault injection, e.g. 2:nan@1,3, 4:kill@5, 1:freeze@3 or, for a ByzSGD "
                        "server, ps2:freeze@10 (repeatable; kinds: " + ", ".join(FAULT_KINDS) + "; servers: "
                        + ", ".join(SERVER_FAULT_KINDS) + ")")
    g.add_argument("--session", type=int, default=None,
                   help="session number stamped into every frame (same on every rank)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML configuration file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set attack.q=3 (repeatable)")


def _options(args: argparse.Namespace, *, progress: bool = True):
    from .options import RuntimeOptions, parse_fault

    return RuntimeOptions(
        evict_timeout=args.evict_timeout, deadline=args.deadline, time_scale=args.time_scale,
        connect_timeout=args.connect_timeout, gloo_timeout=args.gloo_timeout, device=args.device,
        progress_every=args.progress_every if progress else 0, threads=args.threads,
        faults=tuple(parse_fault(f) for f in args.fault),
    )


def add_launch_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add ``launch``, ``serve`` and ``work`` to a ``byzantium`` subparsers object."""
    pl = subparsers.add_parser("launch", help="server + K worker processes on this machine")
    _common(pl)
    pl.add_argument("--workers", type=int, default=None, metavar="K",
                    help="number of worker processes (sets workers=K)")
    pl.add_argument("--out", help="run directory (default: <out_dir>/<name>/<scheme>)")
    pl.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    pl.add_argument("--no-progress", action="store_true", help="no progress lines")
    pl.add_argument("--timeout", type=float, default=None, metavar="S",
                    help="kill the whole job after S seconds")
    pl.add_argument("--start", choices=["forkserver", "exec"], default="forkserver",
                    help="fork the ranks from a forkserver that imported torch once (forkserver, "
                         "default) or start each as a fresh interpreter (exec)")
    _runtime_flags(pl)
    pl.set_defaults(func=_cmd_launch)

    ps = subparsers.add_parser("serve", help="run rank 0 (the parameter server) of a job")
    _common(ps)
    ps.add_argument("--out", help="run directory (default: <out_dir>/<name>/<scheme>)")
    ps.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    ps.add_argument("--resume-step", type=int, default=None, metavar="R",
                    help="ByzSGD: the step every rank resumes from (default with --resume: the "
                         "newest step with a quorum of server checkpoints in --out)")
    _runtime_flags(ps)
    ps.set_defaults(func=_cmd_rank)

    pw = subparsers.add_parser("work", help="run one worker rank of a job")
    _common(pw)
    pw.add_argument("--out", help="ByzSGD only: run directory where the worker writes "
                                  "workers/w<j>.json (frames sent, filter counts)")
    pw.add_argument("--resume-step", type=int, default=0, metavar="R",
                    help="ByzSGD only: start at step R (the servers' --resume-step)")
    _runtime_flags(pw)
    pw.set_defaults(func=_cmd_rank)

    pm = subparsers.add_parser(
        "byzsgd-merge", help="merge the per-rank outputs of a distributed ByzSGD run (servers/, "
                             "workers/) into metrics.csv, summary.json and accuracy.png")
    _common(pm)
    pm.add_argument("--out", help="run directory (default: <out_dir>/<name>/<scheme>)")
    pm.set_defaults(func=_cmd_merge)


def _load(args: argparse.Namespace, extra: Sequence[str] = ()):
    from ...config import load_config

    return load_config(args.config, [*args.set, *extra])


def _out(args: argparse.Namespace, cfg) -> Path:
    from .ranks import default_run_dir

    return Path(args.out) if args.out else default_run_dir(cfg)


def _cmd_launch(args: argparse.Namespace) -> int:
    from .launcher import LaunchError, launch

    extra = [f"workers={args.workers}"] if args.workers is not None else []
    cfg = _load(args, extra)
    out = _out(args, cfg)
    opts = _options(args, progress=not args.no_progress)
    servers = f"{cfg.byzsgd.n_ps} servers" if cfg.scheme.name == "byzsgd" else "server"
    print(f"launching {cfg.scheme.display}: {servers} + {cfg.workers} workers on 127.0.0.1 -> {out}",
          flush=True)
    try:
        summary = launch(cfg, out, opts=opts, resume=args.resume, stream=sys.stdout,
                         timeout=args.timeout, start=args.start)
    except LaunchError as e:
        print(f"byzantium: error: {e}", file=sys.stderr)
        return e.returncode if e.returncode > 0 else 1
    acc = summary.get("final_test_accuracy")
    print(f"done: final test accuracy {acc if acc is None else round(acc, 4)}, "
          f"{summary['steps_completed']} steps, rejections {summary.get('rejections')}; "
          f"results in {out}")
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from .byzsgd import merge_run

    cfg = _load(args)
    if cfg.scheme.name != "byzsgd":
        raise ValueError(f"byzsgd-merge: the config's scheme is {cfg.scheme.name!r}, not byzsgd")
    out = _out(args, cfg)
    if not (out / "servers").is_dir():
        raise FileNotFoundError(f"byzsgd-merge: {out / 'servers'} does not exist (copy every server's "
                                "servers/ps<s>/ directory there first)")
    s = merge_run(cfg, out)
    print(f"merged {len(s['servers_completed'])} completed server(s): final test accuracy "
          f"{s['final_test_accuracy']} (min {s['final_test_accuracy_min']}, max "
          f"{s['final_test_accuracy_max']}), {s['messages_per_step']:.1f} frames/step; {out}/summary.json")
    return 0


def rank_spec(args: argparse.Namespace):
    """The :class:`.ranks.RankSpec` a parsed ``serve`` or ``work`` command line describes."""
    from .ranks import RankSpec

    return RankSpec(args.command, args.config, overrides=tuple(args.set), out=args.out,
                    resume=getattr(args, "resume", False), resume_step=args.resume_step,
                    session=args.session, opts=_options(args))


def _cmd_rank(args: argparse.Namespace) -> int:
    from .ranks import rank_process

    rank_process(rank_spec(args))  # ends the process
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m byzantium.runtime.distributed launch|serve|work ...`` (``serve`` and ``work``
    never return: they end the process, see :func:`.ranks.rank_process`)."""
    p = argparse.ArgumentParser(prog="python -m byzantium.runtime.distributed")
    add_launch_parsers(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"byzantium: error: {e}", file=sys.stderr, flush=True)
        return 2
