"""Throughput, stragglers and server memory of the distributed runtime on loopback.

    python benchmarks/distributed.py                        # MNIST-1D, mlp, K in 4 8 15
    python benchmarks/distributed.py --ks 4 8 --steps 60 --memory-steps 300   # reduced

Three measurements, every job a real server + K worker processes (forked from the launcher's
forkserver, one torch thread per rank), no attack:

1. **steps/s** for K in ``--ks``: vanilla (mean), robust median, and ByzShield (majority vote per
   file, median over files; MOLS r=3 needs K = 3l with l a prime power >= 4, so it runs at
   K = 15 and, as the nearest constructible point, Ramanujan m=s=3 at K = 9; "n/a" elsewhere).
   Steps/s come from the server's own per-step wall times (metrics.csv), first 10 steps dropped.
2. **stragglers** at the largest K: every worker sleeps ``--base-ms`` per step, two of them 5x
   that; first-k with k = K-2 against wait-for-all, and the no-straggler wait-for-all step.
3. **server memory**: the server's resident set size (VmRSS, sampled from /proc) over
   ``--memory-steps`` steps of vanilla at the smallest K; printed at a few points.

Targets (issue 5): robust step <= 1.2x vanilla; first-k with stragglers <= 1.3x the no-straggler
step; flat server memory. On the shared 2-core development machine all K + 1 processes compete
for two cores, so compute that grows with redundancy (ByzShield's workers compute r = 3 times the
files of vanilla's) shows up directly in the step time; on one core per worker it would not.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from byzantium.config import parse_config
from byzantium.runtime.distributed.launcher import Launch
from byzantium.runtime.distributed.options import RuntimeOptions
from byzantium.training.results import read_metrics


def _cfg(args: argparse.Namespace, K: int, scheme: dict, steps: int, stragglers: dict | None = None):
    raw = {
        "name": "bench",
        "seed": 0,
        "workers": K,
        "data": {"name": args.data, "train_size": 4000},
        "model": {"name": args.model, **({"params": {"hidden": [100, 100]}} if args.model == "mlp" else {})},
        "optim": {"lr": 0.05, "momentum": 0.9},
        "training": {"steps": steps, "batch_size": args.batch, "eval_every": steps,
                     "eval_batch_size": 1000},
        "scheme": scheme,
    }
    if stragglers:
        raw["stragglers"] = stragglers
    return parse_config(raw)


def _rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _run(cfg, opts: RuntimeOptions, root: Path, name: str, sample_rss: bool = False):
    run = root / name
    job = Launch(cfg, run, opts=opts)
    samples: list[tuple[int, int]] = []
    stop = threading.Event()

    def sampler() -> None:
        metrics = run / "metrics.csv"
        while not stop.is_set():
            kb = _rss_kb(job.pids[0])
            if kb is not None and metrics.exists():
                n = sum(1 for _ in metrics.open()) - 1
                samples.append((n, kb))
            time.sleep(0.2)

    try:
        job.start()
        th = threading.Thread(target=sampler, daemon=True) if sample_rss else None
        if th:
            th.start()
        rc = job.wait(timeout=1800)
    finally:
        stop.set()
        job.close()
    if rc != 0:
        raise RuntimeError(f"{name}: server exited with {rc}:\n" + "\n".join(job.server_lines[-10:]))
    rows = read_metrics(run / "metrics.csv")
    per_step = [b["wall_time"] - a["wall_time"] for a, b in zip(rows, rows[1:])][10:]
    return statistics.median(per_step), len(per_step) / sum(per_step), samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="mnist1d")
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--batch", type=int, default=300)
    ap.add_argument("--ks", type=int, nargs="+", default=[4, 8, 15])
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--base-ms", type=float, default=20.0, help="per-step sleep of every worker")
    ap.add_argument("--memory-steps", type=int, default=1000)
    ap.add_argument("--skip", nargs="*", default=[], choices=["throughput", "stragglers", "memory"])
    args = ap.parse_args()
    opts = RuntimeOptions(progress_every=0)
    root = Path(tempfile.mkdtemp(prefix="byz-bench-"))
    print(f"data={args.data} model={args.model} batch={args.batch} steps={args.steps} "
          f"(loopback, gloo, 1 torch thread per rank); runs in {root}", flush=True)

    if "throughput" not in args.skip:
        print("\n1. steps/s (median step ms in parentheses)")
        print(f"{'K':>3}  {'vanilla':>16}  {'median':>16}  {'ByzShield vote+median':>24}  "
              f"{'median/vanilla':>14}  {'ByzShield/vanilla':>17}")
        ks = sorted(set(args.ks) | ({9} if 15 in args.ks else set()))
        for K in ks:
            res = {}
            schemes = {"vanilla": {"name": "vanilla"},
                       "median": {"name": "robust", "aggregator": "median"}}
            if K == 15:
                schemes["byzshield"] = {"name": "byzshield", "assignment": "mols", "r": 3,
                                        "aggregator": "median"}
            elif K == 9:
                schemes["byzshield"] = {"name": "byzshield", "assignment": "ramanujan", "m": 3,
                                        "s": 3, "aggregator": "median"}
            for label, sc in schemes.items():
                if K not in args.ks and label != "byzshield":
                    continue
                med, rate, _ = _run(_cfg(args, K, sc, args.steps), opts, root, f"{label}-{K}")
                res[label] = (med, rate)
            if K not in args.ks:  # ByzShield-only point (K = 9)
                med, rate = res["byzshield"]
                print(f"{K:>3}  {'':>16}  {'':>16}  {rate:>13.1f} ({1000 * med:5.1f})")
                continue
            v, m = res["vanilla"], res["median"]
            bz = res.get("byzshield")
            bz_txt = f"{bz[1]:>13.1f} ({1000 * bz[0]:5.1f})" if bz else f"{'n/a':>24}"
            ratio_b = f"{bz[0] / v[0]:>17.2f}" if bz else f"{'-':>17}"
            print(f"{K:>3}  {v[1]:>8.1f} ({1000 * v[0]:5.1f})  {m[1]:>8.1f} ({1000 * m[0]:5.1f})  "
                  f"{bz_txt:>24}  {m[0] / v[0]:>14.2f}  {ratio_b}", flush=True)

    if "stragglers" not in args.skip:
        K = max(args.ks)
        slow = [K - 2, K - 1]
        base = {"model": "none", "base_time": args.base_ms / 1000.0}
        st_opts = RuntimeOptions(progress_every=0, time_scale=1.0)
        cases = {
            "no stragglers, wait-for-all": {"model": "slow_set", "params": {"workers": slow, "factor": 1.0, "base": base}},
            f"2 slowed 5x, first-k k={K - 2}": {"model": "slow_set", "params": {"workers": slow, "factor": 5.0, "base": base},
                                              "policy": "first_k", "k": K - 2},
            "2 slowed 5x, wait-for-all": {"model": "slow_set", "params": {"workers": slow, "factor": 5.0, "base": base}},
        }
        print(f"\n2. stragglers, K={K}, vanilla, every worker sleeps {args.base_ms:g} ms per step "
              f"(workers {slow}: 5x)")
        ref = None
        for label, st in cases.items():
            med, rate, _ = _run(_cfg(args, K, {"name": "vanilla"}, args.steps, st),
                                st_opts, root, label.replace(" ", "_").replace(",", ""))
            ref = ref or med
            print(f"   {label:<34} {rate:7.1f} steps/s  median step {1000 * med:6.1f} ms  "
                  f"x no-straggler {med / ref:5.2f}", flush=True)

    if "memory" not in args.skip:
        K = min(args.ks)
        n = args.memory_steps
        _, rate, samples = _run(_cfg(args, K, {"name": "vanilla"}, n), opts, root,
                                "memory", sample_rss=True)
        print(f"\n3. server memory, vanilla K={K}, {n} steps ({rate:.1f} steps/s)")
        # samples while steps run (the final evaluation and plot come after step n)
        run_samples = [(st, kb) for st, kb in samples if st < n]
        for mark in sorted({10, n // 10, n // 4, n // 2, 3 * n // 4, n - 1}):
            near = [kb for st, kb in run_samples if st >= mark]
            if near:
                print(f"   after {mark:>5} steps: RSS {near[0] / 1024:7.1f} MiB")
        later = [kb for st, kb in run_samples if st >= n // 10]
        if len(later) > 1:
            print(f"   growth from step {n // 10} to step {n - 1}: "
                  f"{(later[-1] - later[0]) / 1024:+.2f} MiB over {n - 1 - n // 10} steps")

if __name__ == "__main__":
    sys.exit(main())
