"""Time every registered aggregation rule against the plain mean.

    python benchmarks/aggregators.py            # n in {10, 25, 50}, d in {1e5, 1e6}
    python benchmarks/aggregators.py --quick    # small sizes, a few seconds
    python benchmarks/aggregators.py --n 25 --d 1e6 --rules median,trimmed_mean --threads 1

For each (n, d) it prints, per rule, the median wall time over several runs of
``get(name, f=...)(grads)`` on a float32 ``(n, d)`` stack and its ratio to the time of
``get("mean")`` measured in the same run (the mean is timed before and after the rules and the
median of all its samples is used). Ratios are what to compare: absolute times depend on the
machine and on whatever else runs on it. On a busy machine the multi-threaded mean suffers most
(its threads wait for each other), which flatters every ratio: ``--threads 1`` compares the
algorithms' work more fairly there.

The ``f`` of each rule is the largest its constraint allows up to ``n // 4``; SMEA, whose
cost grows with the number ``C(n, f)`` of subsets it scans, is capped at the largest ``f`` with
``C(n, f) <= 1e5``; MDA (a 2^f search) runs with ``f = 5`` at ``n = 25`` as in the issue's target. Centered clipping runs its default ``L = 3``
iterations from the coordinate median (and, in an extra row, from a given start, as with
momentum); median-of-means its default ``2f + 1`` groups. Extra rows time the pre-aggregations
alone (``nnm``; ``bucketing`` with ``s = 2``; ``clip``), each followed by nothing but itself.
Combinations a rule's constraint forbids are listed as skipped, with the constraint. Rules are
read from the registry, so rules added later appear without editing this file.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from byzantium.aggregators import REGISTRY, get  # noqa: E402
from byzantium.aggregators.compose import _required  # noqa: E402


SUBSET_RULES = {"smea"}  # cost ~ C(n, f): f capped
FIXED_F = {("mda", 25): 5}  # the issue's MDA target is stated at n=25, f=5 (MDA's search is 2^f)


def choose_params(name: str, n: int) -> tuple[dict[str, Any] | None, str]:
    """Parameters for rule ``name`` at ``n`` inputs, or ``(None, why)`` when none is allowed."""
    entry = REGISTRY[name]
    missing = [p for p in _required(entry)]
    if missing:
        return None, f"needs parameter(s) {missing}"
    if "f" not in entry.params:
        return {}, ""
    if (name, n) in FIXED_F:
        return {"f": FIXED_F[(name, n)]}, "f as in the issue's target"
    f_max = n // 4
    if name in SUBSET_RULES:
        f_max = max([f for f in range(f_max + 1) if math.comb(n, f) <= 100_000], default=0)
    allowed = [f for f in range(f_max, -1, -1) if entry.constraint.ok(n, f)]
    if not allowed:
        return None, f"constraint {entry.constraint.text} fails for every f <= {f_max}"
    note = "" if allowed[0] == n // 4 else f"f capped ({entry.constraint.text}" + (
        ", C(n,f) <= 1e5)" if name in SUBSET_RULES else ")"
    )
    return {"f": allowed[0]}, note


def time_call(fn: Callable[[], Any], repeats: int) -> list[float]:
    fn()  # warm-up: caches, thread pools, lazy imports
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def bench(n: int, d: int, repeats: int, only: set[str] | None) -> None:
    gen = torch.Generator().manual_seed(0)
    grads = torch.randn(n, d, generator=gen)
    mean = get("mean")
    mean_samples = time_call(lambda: mean(grads), repeats)
    rows = []
    for name in sorted(n for n, e in REGISTRY.items() if e.kind == "rule"):
        if name == "mean" or (only and name not in only):
            continue
        params, note = choose_params(name, n)
        if params is None:
            rows.append((name, "-", None, note or "skipped"))
            continue
        agg = get(name, **params)
        try:
            t = statistics.median(time_call(lambda: agg(grads), repeats))
        except Exception as e:  # report and go on: one broken rule must not hide the others
            rows.append((name, str(params.get("f", "-")), None, f"error: {type(e).__name__}: {e}"))
            continue
        rows.append((name, str(params.get("f", "-")), t, note))
    if not only or "centered_clipping" in only:
        agg = get("centered_clipping", f=n // 4, start=grads[n - 1].clone())
        t = statistics.median(time_call(lambda: agg(grads), repeats))
        rows.append(("centered_clipping", str(n // 4), t, "start given (no median)"))
    if not only:
        for name, params in (("nnm", {"f": n // 4}), ("bucketing", {"s": 2}), ("clip", {"tau": 1.0})):
            fn = REGISTRY[name].fn
            t = statistics.median(time_call(lambda: fn(grads, **params), repeats))
            rows.append((name, str(params.get("f", "-")), t, "pre-aggregation alone"))
    mean_samples += time_call(lambda: mean(grads), repeats)
    t_mean = statistics.median(mean_samples)
    print(f"\nn={n}, d={d:.0e}: mean {t_mean * 1e3:.2f} ms (median of {len(mean_samples)})")
    print(f"  {'rule':<20} {'f':>3} {'ms':>10} {'x mean':>8}  note")
    for name, f, t, note in rows:
        if t is None:
            print(f"  {name:<20} {f:>3} {'-':>10} {'-':>8}  skipped: {note}")
        else:
            print(f"  {name:<20} {f:>3} {t * 1e3:>10.2f} {t / t_mean:>8.2f}  {note}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (n 10, 25; d 1e4, 1e5)")
    ap.add_argument("--n", type=int, nargs="*", help="numbers of inputs (default 10 25 50)")
    ap.add_argument("--d", type=float, nargs="*", help="dimensions (default 1e5 1e6)")
    ap.add_argument("--repeats", type=int, help="timed runs per rule (default 5, quick 3)")
    ap.add_argument("--rules", help="comma-separated rule names (default: all registered)")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ns = args.n or ([10, 25] if args.quick else [10, 25, 50])
    ds = [int(x) for x in (args.d or ([1e4, 1e5] if args.quick else [1e5, 1e6]))]
    repeats = args.repeats or (3 if args.quick else 5)
    only = set(args.rules.split(",")) if args.rules else None
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; float32; "
          f"median of {repeats} runs after one warm-up")
    for n in ns:
        for d in ds:
            bench(n, d, repeats, only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
