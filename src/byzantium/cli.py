"""The ``byzantium`` command line.

    byzantium train CONFIG [--set key=value ...] [--out DIR] [--resume]
    byzantium compare CONFIG [--set key=value ...] [--out DIR]
    byzantium adversary [--K 15 --r 3 --q 1-7] [--csv PATH]
    byzantium launch CONFIG --workers K        (server + K worker processes on this machine)
    byzantium serve|work CONFIG                (one rank, from RANK/WORLD_SIZE/MASTER_ADDR/PORT)
    byzantium list aggregators|attacks|schemes|models|datasets|stragglers
    byzantium aggregators-demo
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
from pathlib import Path
from typing import Sequence


def _print_rows(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    widths[-1] = 0
    print("  ".join(f"{h:<{w}}" for h, w in zip(headers, widths)).rstrip())
    for r in rows:
        print("  ".join(f"{str(x):<{w}}" for x, w in zip(r, widths)).rstrip())


def _cmd_list(args: argparse.Namespace) -> int:
    if args.what == "aggregators":
        from .aggregators import describe

        _print_rows(("name", "kind", "constraint", "description"), describe())
    elif args.what == "attacks":
        from .attacks import describe as describe_attacks
        from .attacks import describe_server_attacks

        print("worker attacks (attack.name):")
        rows = describe_attacks()
        _print_rows(("name", "knowledge", "parameters", "description"),
                    [(r[0], r[1], r[4] or "-", r[2]) for r in rows])
        print("\nserver attacks (byzsgd.server_attack):")
        _print_rows(("name", "knowledge", "parameters", "description"),
                    [(r[0], r[1], r[3] or "-", r[2]) for r in describe_server_attacks()])
    elif args.what == "schemes":
        from .schemes import describe_schemes

        _print_rows(("name", "parts"), describe_schemes())
    elif args.what == "models":
        from .training.models import MODELS

        _print_rows(("name", "parameters", "description"),
                    [(n, _signature_params(c.__init__, skip=("self", "dataset", "input_shape",
                                                               "num_outputs", "in_features", "out")),
                      _first_line(c)) for n, c in MODELS.items()])
    elif args.what == "datasets":
        from .training.datasets import DATASETS

        _print_rows(("name", "parameters (data.params)", "description"),
                    [(n, _dataclass_params(DATASETS.params_class(n)), _first_line(f))
                     for n, f in DATASETS.items()])
    else:
        from .stragglers import DELAY_MODELS

        _print_rows(("name", "parameters (stragglers.params)", "description"),
                    [(n, _dataclass_params(c) if dataclasses.is_dataclass(c)
                      else _signature_params(c.__init__, skip=("self",)), _first_line(c))
                     for n, c in DELAY_MODELS.items()])
    return 0


def _first_line(obj: object) -> str:
    return ((obj.__doc__ or "").strip().splitlines() or [""])[0]


def _dataclass_params(cls: type | None) -> str:
    """``name=default`` of a params dataclass's fields (``-`` when it takes none)."""
    if cls is None:
        return "-"
    out = []
    for f in dataclasses.fields(cls):
        if f.name.startswith("_") or not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            out.append(f"{f.name}={f.default!r}")
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out.append(f"{f.name}={f.default_factory()!r}")  # type: ignore[misc]
        else:
            out.append(f"{f.name} (required)")
    return ", ".join(out) or "-"


def _signature_params(fn: object, skip: tuple[str, ...]) -> str:
    """``name=default`` of a constructor's keyword parameters."""
    out = []
    for name, prm in inspect.signature(fn).parameters.items():  # type: ignore[arg-type]
        if name in skip or prm.kind in (prm.VAR_POSITIONAL, prm.VAR_KEYWORD):
            continue
        out.append(name if prm.default is prm.empty else f"{name}={prm.default!r}")
    return ", ".join(out) or "-"


def _load(args: argparse.Namespace):
    from .config import load_config

    return load_config(args.config, args.set)


def _cmd_train(args: argparse.Namespace) -> int:
    from .runtime.run import run_training

    cfg = _load(args)
    out = Path(args.out) if args.out else Path(cfg.out_dir) / cfg.name / cfg.scheme.display
    print(f"training {cfg.scheme.display} -> {out}")
    summary = run_training(cfg, out, resume=args.resume, progress=not args.no_progress,
                           force=args.force)
    if summary.get("status") == "diverged":  # a result, not an error: exit code 0
        print(f"diverged at step {summary['diverged_at_step']}: {summary['divergence']}; "
              f"results in {out}")
        return 0
    print(
        f"done: final test accuracy {_fmt(summary['final_test_accuracy'])}, best "
        f"{_fmt(summary['best_test_accuracy'])}, {summary['steps_completed']} steps; results in {out}"
    )
    return 0


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def _cmd_compare(args: argparse.Namespace) -> int:
    from .experiments.compare import run_compare

    cfg = _load(args)
    out = Path(args.out) if args.out else Path(cfg.out_dir) / cfg.name
    n = len(cfg.compare or [cfg.scheme])
    print(f"comparing {n} schemes under attack '{cfg.attack.name}' (q={cfg.attack.q}) -> {out}")
    res = run_compare(cfg, out, progress=not args.no_progress, force=args.force)
    print()
    print(res["table"])
    print(f"\ntable: {out / 'table.md'}  plot: {out / 'accuracy.png'}")
    return 0


def _cmd_aggregators_demo(args: argparse.Namespace) -> int:
    from .aggregators._demo import run_demo

    return run_demo()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="byzantium", description="Byzantine-resilient distributed training in PyTorch"
    )
    sub = p.add_subparsers(dest="command", required=True)

    pl = sub.add_parser("list", help="list registered components")
    pl.add_argument("what", choices=["aggregators", "attacks", "schemes", "models", "datasets",
                                     "stragglers"])
    pl.set_defaults(func=_cmd_list)

    for name, fn, helptext in (
        ("train", _cmd_train, "train one scheme in the simulated cluster"),
        ("compare", _cmd_compare, "train several schemes on the same data, attack and seed"),
    ):
        pt = sub.add_parser(name, help=helptext)
        pt.add_argument("config", help="YAML configuration file")
        pt.add_argument(
            "--set", action="append", default=[], metavar="KEY=VALUE",
            help="override a config field, e.g. --set attack.q=3 (repeatable)",
        )
        pt.add_argument("--out", help="run directory (default: <out_dir>/<name>/...)")
        pt.add_argument("--no-progress", action="store_true", help="no progress bar")
        pt.add_argument("--force", action="store_true",
                        help="replace the results already in the output directory")
        if name == "train":
            pt.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
        pt.set_defaults(func=fn)

    try:
        from .assignments.cli import add_adversary_parser
    except ImportError:  # pragma: no cover - only while the package is being assembled
        pass
    else:
        add_adversary_parser(sub)

    from .runtime.distributed.cli import add_launch_parsers

    add_launch_parsers(sub)

    pd = sub.add_parser("aggregators-demo", help="robustness of every rule on synthetic gradients")
    pd.set_defaults(func=_cmd_aggregators_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"byzantium: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
