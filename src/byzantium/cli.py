"""The ``byzantium`` command line."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def _cmd_list(args: argparse.Namespace) -> int:
    if args.what == "aggregators":
        from .aggregators import describe

        rows = describe()
        w = max(len(r[0]) for r in rows)
        wc = max(len(r[2]) for r in rows)
        print(f"{'name':<{w}}  {'kind':<14}  {'constraint':<{wc}}  description")
        for name, kind, constraint, summary in rows:
            print(f"{name:<{w}}  {kind:<14}  {constraint:<{wc}}  {summary}")
        return 0
    raise AssertionError(args.what)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="byzantium", description="Byzantine-resilient distributed training in PyTorch"
    )
    sub = p.add_subparsers(dest="command", required=True)

    pl = sub.add_parser("list", help="list registered components")
    pl.add_argument("what", choices=["aggregators"])
    pl.set_defaults(func=_cmd_list)

    pd = sub.add_parser("demo", help="run the default experiment")
    pd.add_argument("--quick", action="store_true", help="a smaller, faster run")
    pd.set_defaults(func=_cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        print(f"byzantium: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
