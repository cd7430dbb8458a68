"""``byzantium adversary``: worst-case corruption tables for ByzShield, DETOX and the baseline.

The lead's :mod:`byzantium.cli` wires these in::

    sub = parser.add_subparsers(...)
    add_adversary_parser(sub)          # sets func=run_adversary

One row per ``q``; for every scheme defined for the same ``K`` and ``r``: the exact ``c_max``
(:func:`~byzantium.assignments.worst_case`), ``eps = c_max / num_files`` and, for the ByzShield
graphs, the spectral bound ``gamma`` (spec §1.7). DETOX uses its closed form
``min(floor(q / r'), K / r)`` (exact; cross-checked against the search in the tests), the
baseline ``c = q``; ``random_eps`` is the expected corrupted fraction for a uniformly random
Byzantine set, the same for every scheme with replication ``r`` (§1.8 obs. 2).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

from .adversary import random_placement_fraction, repetition_worst_case, spectral_bound, worst_case
from .constructions import mols, ramanujan
from .galois import is_prime, prime_power
from .graph import Assignment

__all__ = ["add_adversary_parser", "run_adversary", "parse_q", "adversary_table"]


def parse_q(spec: str, K: int) -> list[int]:
    """``"1-7"``, ``"3"``, ``"1,3,5"`` or ``"2-4,8"`` -> sorted distinct q values in ``[0, K]``."""
    out: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                vals = range(lo, hi + 1)
            else:
                vals = range(int(part), int(part) + 1)
        except ValueError:
            raise ValueError(f"adversary: --q must look like '1-7' or '1,3,5', got {spec!r}") from None
        out.update(vals)
    if not out:
        raise ValueError(f"adversary: --q selects no value, got {spec!r}")
    bad = [q for q in out if not 0 <= q <= K]
    if bad:
        raise ValueError(f"adversary: every q must satisfy 0 <= q <= K={K}, got {sorted(bad)}")
    return sorted(out)


@dataclass(frozen=True)
class _Scheme:
    key: str  # column prefix
    label: str
    assignment: Assignment


def _byzshield_schemes(K: int, r: int, m: int | None) -> list[_Scheme]:
    """Every ByzShield graph with ``K`` workers and replication ``r``."""
    out = []
    if K % r == 0:
        l = K // r
        if prime_power(l) is not None and 1 <= r <= l - 1:
            out.append(_Scheme("mols", f"mols(l={l}, r={r})", mols(l, r)))
        if is_prime(l) and r < l:
            out.append(_Scheme("rama1", f"ramanujan(m={r}, s={l}) case 1", ramanujan(r, l)))
    s = math.isqrt(K)
    if s * s == K and s == r and is_prime(s):
        mm = s if m is None else m
        if mm >= s:
            out.append(_Scheme("rama2", f"ramanujan(m={mm}, s={s}) case 2", ramanujan(mm, s)))
    return out


def _schemes(args: argparse.Namespace) -> tuple[int, int, list[_Scheme]]:
    scheme = args.scheme
    if scheme == "mols":
        if args.l is None:
            raise ValueError("adversary: --scheme mols needs --l (and --r)")
        a = mols(args.l, args.r)
        return a.K, a.r, [_Scheme("mols", f"mols(l={args.l}, r={args.r})", a)]
    if scheme == "ramanujan":
        if args.m is None or args.s is None:
            raise ValueError("adversary: --scheme ramanujan needs --m and --s")
        a = ramanujan(args.m, args.s)
        case = a.param_dict["case"]
        return a.K, a.r, [_Scheme(f"rama{case}", f"ramanujan(m={args.m}, s={args.s}) case {case}",
                                  a)]
    K, r = args.K, args.r
    if K < 1 or r < 1:
        raise ValueError(f"adversary: --K and --r must be >= 1, got K={K}, r={r}")
    if scheme in ("repetition", "baseline"):
        return K, r, []
    return K, r, _byzshield_schemes(K, r, args.m)


def adversary_table(args: argparse.Namespace) -> tuple[list[str], list[list[Any]], list[str]]:
    """``(header, rows, notes)`` of the table ``run_adversary`` prints / writes."""
    K, r, schemes = _schemes(args)
    qs = parse_q(args.q, K) if args.q else list(range(1, (K - 1) // 2 + 1)) or [0]
    cols: list[tuple[str, Callable[[int], Any]]] = []
    notes = [f"K={K} workers, replication r={r}, r'={(r + 1) // 2} copies win a vote"]
    timings: dict[str, float] = {}
    for sc in schemes:
        a = sc.assignment
        notes.append(f"{sc.key}: {sc.label}: {a.num_files} files, load l={a.l}")
        cache: dict[int, Any] = {}

        def wc(q: int, a: Assignment = a, cache: dict = cache, key: str = sc.key) -> Any:
            if q not in cache:
                t0 = time.perf_counter()
                cache[q] = worst_case(a, q, method=args.method)
                timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0
            return cache[q]

        cols.append((f"{sc.key}_c_max", lambda q, wc=wc: wc(q).c_max))
        cols.append((f"{sc.key}_eps", lambda q, wc=wc: round(wc(q).epsilon, 4)))
        if a.r >= 3 and a.r % 2:
            cols.append((f"{sc.key}_gamma", lambda q, a=a: round(spectral_bound(a, q), 2)))
    if K % r == 0 and args.scheme in ("auto", "repetition", "mols", "ramanujan"):
        g = K // r
        notes.append(f"detox: repetition(K={K}, r={r}): {g} groups (closed form min(q//r', K/r))")
        cols.append(("detox_c_max", lambda q: repetition_worst_case(K, r, q)))
        cols.append(("detox_eps", lambda q: round(repetition_worst_case(K, r, q) / g, 4)))
    elif args.scheme == "repetition":
        raise ValueError(f"adversary: repetition needs r | K, got K={K}, r={r}")
    notes.append(f"baseline: {K} files, no redundancy (c = q)")
    cols.append(("baseline_c_max", lambda q: q))
    cols.append(("baseline_eps", lambda q: round(q / K, 4)))
    if args.scheme != "baseline" and r <= K:
        notes.append(f"random: expected eps for a uniformly random q-set, "
                     f"P[Hypergeom(K={K}, q, r={r}) >= r'] (any scheme with replication r)")
        cols.append(("random_eps", lambda q: round(random_placement_fraction(K, r, q), 4)))
    header = ["q"] + [c[0] for c in cols]
    rows = [[q] + [fn(q) for _, fn in cols] for q in qs]
    for key, t in timings.items():
        notes.append(f"search time {key}: {t:.2f} s")
    return header, rows, notes


def _format(header: list[str], rows: list[list[Any]]) -> str:
    cells = [header] + [[str(v) for v in row] for row in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells)


def run_adversary(args: argparse.Namespace) -> int:
    """Print the worst-case table (and write it as CSV with ``--csv``). Returns 0."""
    header, rows, notes = adversary_table(args)
    out = sys.stdout
    search = [n for n in notes if n.startswith("search time")]
    print("# worst-case corrupted files under the omniscient adversary (c_max, eps = c_max/files)",
          file=out)
    for n in notes:
        if n not in search:
            print(f"# {n}", file=out)
    print(_format(header, rows), file=out)
    for n in search:
        print(f"# {n}", file=out)
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)
        print(f"# wrote {args.csv}", file=out)
    return 0


def add_adversary_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``adversary`` subcommand to ``subparsers`` (sets ``func=run_adversary``)."""
    p = subparsers.add_parser(
        "adversary",
        help="worst-case corruption tables (ByzShield MOLS/Ramanujan vs DETOX vs baseline)",
        description=(
            "Exact worst-case number of files whose majority the omniscient adversary wins, "
            "for every q. Default: K=15, r=3 (MOLS l=5, Ramanujan case 1, DETOX, baseline)."
        ),
    )
    p.add_argument("--scheme", choices=["auto", "mols", "ramanujan", "repetition", "baseline"],
                   default="auto",
                   help="auto: every scheme defined for --K and --r; mols: needs --l, --r; "
                        "ramanujan: needs --m, --s (case 1 if m < s, case 2 otherwise)")
    p.add_argument("--K", type=int, default=15, help="number of workers (default 15)")
    p.add_argument("--r", type=int, default=3, help="replication (default 3)")
    p.add_argument("--l", type=int, default=None, help="MOLS order (prime power)")
    p.add_argument("--m", type=int, default=None, help="Ramanujan m (also case-2 m with auto)")
    p.add_argument("--s", type=int, default=None, help="Ramanujan s (prime)")
    p.add_argument("--q", type=str, default=None,
                   help="Byzantine counts, e.g. 1-7 or 1,3,5 (default 1..(K-1)//2)")
    p.add_argument("--method", choices=["auto", "exhaustive", "bnb", "milp"], default="auto",
                   help="exact search method (default auto: exhaustive when small, else bnb)")
    p.add_argument("--csv", type=str, default=None, help="also write the table to this CSV file")
    p.set_defaults(func=run_adversary)
    return p
