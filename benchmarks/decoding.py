"""Decoding and worst-case search costs (issue 3).

    python benchmarks/decoding.py              # d = 1e6, all three sections
    python benchmarks/decoding.py --quick      # d = 1e5, fewer repetitions, small search cases
    python benchmarks/decoding.py --threads 1  # single-threaded torch (fairer on a busy machine)

1. **Majority vote vs coordinate median** (ByzShield MOLS l=5, r=3: K=15 workers each sending its
   5 file gradients, 75 float32 messages of d coordinates). The vote (:func:`vote_messages`,
   reading the (15, 5, d) message stack directly) is timed against
   ``byzantium.aggregators.get("median")`` over the same 75 messages as a (75, d) stack, in four
   situations: (a) honest replicas, bit-identical but separate messages (a real server);
   (b) the q=3 worst-case Byzantine set sending a constant (their files take the tolerance path);
   (c) honest replicas with round-off noise (no exact path at all: every file on the tolerance
   path, the vote's worst case); (d) the simulator's layout, where replicas are the same row (one
   honest gradient per file plus the Byzantine rows). Target (DRACO/DETOX's claim): vote >= 10x
   faster than the median.
2. **DRACO cyclic decode vs a plain sum**: decoding K complex128 messages with s adversaries
   against ``R.sum(0)`` of the same K complex128 messages (target <= 5x) and, for context,
   against the float32 sum a vanilla server does over K real gradients; the decode error is
   printed too.
3. **Worst-case search**: exact ``c_max`` for every q = 1..(K-1)//2 of a list of assignments
   (every MOLS with l in {5, 7, 8, 9} up to K = 45, i.e. r <= 5 and mols(7,6) with K = 42, plus
   Ramanujan and repetition cases), with the seconds of each q; the slowest q per assignment must
   stay under 10 s.

All timings are medians over ``--reps`` repetitions, with the compared operations interleaved
in the same loop so that load from other processes hits both alike; ratios are what to compare.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from byzantium.aggregators import get  # noqa: E402
from byzantium.assignments import (  # noqa: E402
    CyclicCode,
    mols,
    ramanujan,
    repetition,
    worst_case,
)
from byzantium.decoding import vote_messages  # noqa: E402
from byzantium.schemes import VoteScheme  # noqa: E402


def interleaved(fns: dict[str, Callable[[], object]], reps: int) -> dict[str, float]:
    """Median wall time of each function, calling them in turn ``reps`` times (one warm-up)."""
    for f in fns.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_vote(d: int, reps: int) -> None:
    a = mols(5, 3)
    g = torch.Generator().manual_seed(0)
    files = torch.randn(a.num_files, d, generator=g)
    honest = torch.stack([files[list(fs)] for fs in a.files_of])  # (K, l, d), separate copies
    byz = honest.clone()
    wc = worst_case(a, 3)
    byz[list(wc.workers)] = -100.0
    noisy = honest * (1 + 1e-7 * torch.randn(honest.shape, generator=g))
    # simulator layout: the 25 honest file gradients once, plus the Byzantine workers' rows
    sim_rows = torch.cat([files, torch.full((len(wc.workers) * a.l, d), -100.0)])
    slots = a.copy_slots().copy()
    byz_row = {w: a.num_files + t * a.l for t, w in enumerate(wc.workers)}
    for i, ws in enumerate(a.workers_of):
        for c, w in enumerate(ws):
            slots[i, c] = byz_row[w] + a.files_of[w].index(i) if w in byz_row else i
    med = get("median")
    cases = {
        "(a) honest, separate copies": (honest, a),
        f"(b) q=3 worst case ({wc.c_max} files lost)": (byz, a),
        "(c) round-off replicas (no exact path)": (noisy, a),
        "(d) simulator layout (shared rows)": (sim_rows, slots),
    }
    print(f"\n## 1. majority vote vs coordinate median: MOLS l=5, r=3 (K=15, 25 files, "
          f"75 messages), d={d:.0e}, float32")
    print("(vote: a fresh output each call; vote+buf: into a reused output buffer, as a server "
          "loop would)")
    print(f"{'situation':44s} {'vote ms':>8s} {'vote+buf':>9s} {'median ms':>10s} "
          f"{'median/vote':>12s} {'(+buf)':>7s}")
    buf = torch.empty(a.num_files, d)
    for name, (msgs, sl) in cases.items():
        stack = msgs.reshape(-1, d) if msgs.dim() == 3 else byz.reshape(-1, d)
        res = vote_messages(msgs, sl)
        assert bool(res.ok.all())
        t = interleaved({"vote": lambda m=msgs, s=sl: vote_messages(m, s),
                         "buf": lambda m=msgs, s=sl: vote_messages(m, s, out=buf),
                         "median": lambda x=stack: med(x)}, reps)
        print(f"{name:44s} {t['vote'] * 1e3:8.1f} {t['buf'] * 1e3:9.1f} {t['median'] * 1e3:10.1f} "
              f"{t['median'] / t['vote']:11.1f}x {t['median'] / t['buf']:6.1f}x")
    # the whole server step of a real ByzShield server (case a): the vote into the scheme's kept
    # buffer, then the median over the 25 voted files, against the median of all 75 messages
    sch = VoteScheme("byzshield", a, q=3, aggregator="median")
    rec = torch.ones(a.K, dtype=torch.bool)
    t = interleaved({"server": lambda: sch.server_aggregate(honest, rec, step=0),
                     "median": lambda x=honest.reshape(-1, d): med(x)}, reps)
    print(f"ByzShield server step (VoteScheme.server_aggregate: vote + median of 25 files), case (a): "
          f"{t['server'] * 1e3:.1f} ms; median of the 75 messages {t['median'] * 1e3:.1f} ms "
          f"({t['median'] / t['server']:.1f}x)")


def bench_cyclic(d: int, reps: int) -> None:
    print(f"\n## 2. DRACO cyclic decode vs plain sum, d={d:.0e} (complex128 messages)")
    print(f"{'K':>3s} {'s':>3s} {'decode ms':>10s} {'sum c128 ms':>12s} {'ratio':>7s} "
          f"{'sum f32 ms':>11s} {'ratio':>7s} {'rel. error':>11s}")
    for K, s in [(15, 3), (25, 2), (25, 6)]:
        code = CyclicCode(K, s)
        g = torch.Generator().manual_seed(K + s)
        G = torch.randn(K, d, generator=g)
        truth = G.double().sum(dim=0)
        R = code.encode(G)
        R[list(range(0, 2 * s, 2))] = 1e8  # s adversaries sending huge values
        gen = torch.Generator().manual_seed(1)
        res = code.decode(R, gen)
        err = float((res.total - truth).abs().max() / truth.abs().max())
        t = interleaved({"decode": lambda: code.decode(R, gen), "sum": lambda: R.sum(dim=0),
                         "sum32": lambda: G.sum(dim=0)}, reps)
        print(f"{K:3d} {s:3d} {t['decode'] * 1e3:10.1f} {t['sum'] * 1e3:12.1f} "
              f"{t['decode'] / t['sum']:6.1f}x {t['sum32'] * 1e3:11.1f} "
              f"{t['decode'] / t['sum32']:6.1f}x {err:11.1e}")


def bench_worst_case(quick: bool) -> None:
    cases = [("mols(5,3)", mols(5, 3)), ("ramanujan(3,5)", ramanujan(3, 5)),
             ("mols(7,3)", mols(7, 3)), ("ramanujan(5,5)", ramanujan(5, 5)),
             ("ramanujan(10,5)", ramanujan(10, 5))]
    if not quick:
        cases += [("mols(5,4)", mols(5, 4)), ("mols(7,4)", mols(7, 4)), ("mols(7,5)", mols(7, 5)),
                  ("ramanujan(5,7)", ramanujan(5, 7)), ("repetition(45,3)", repetition(45, 3)),
                  ("repetition(45,5)", repetition(45, 5)), ("mols(8,3)", mols(8, 3)),
                  ("mols(8,4)", mols(8, 4)), ("mols(8,5)", mols(8, 5)), ("mols(9,3)", mols(9, 3)),
                  ("mols(9,4)", mols(9, 4)), ("mols(7,6)", mols(7, 6)), ("mols(9,5)", mols(9, 5))]
    print("\n## 3. exact worst-case search, q = 1..(K-1)//2 (e = exhaustive, b = branch and bound)")
    print("per assignment: c_max and method by q, then seconds by q; the slowest q must stay "
          "under 10 s")
    print(f"{'assignment':18s} {'K':>3s} {'files':>5s} {'max s':>6s} {'total s':>8s}")
    for name, a in cases:
        row, secs = [], []
        for q in range(1, (a.K - 1) // 2 + 1):
            res = worst_case(a, q)
            row.append(f"{res.c_max}{res.method[0]}")
            secs.append(res.seconds)
        worst = max(secs)
        flag = "" if worst < 10 else "  (over 10 s)"
        print(f"{name:18s} {a.K:3d} {a.num_files:5d} {worst:6.2f} {sum(secs):8.2f}{flag}")
        print(f"{'':18s} c_max: {' '.join(row)}")
        print(f"{'':18s} s:     {' '.join(f'{t:.2f}' for t in secs)}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--d", type=float, default=None, help="gradient dimension (default 1e6)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 7, quick 3)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--sections", type=str, default="1,2,3", help="which sections, e.g. 1,2")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    d = int(args.d or (1e5 if args.quick else 1e6))
    reps = args.reps or (3 if args.quick else 7)
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads")
    sections = {s.strip() for s in args.sections.split(",")}
    if "1" in sections:
        bench_vote(d, reps)
    if "2" in sections:
        bench_cyclic(d, reps)
    if "3" in sections:
        bench_worst_case(args.quick)


if __name__ == "__main__":
    main()
