"""ByzSGD: messages and time per step against a single server running MDA, in both runtimes.

    python benchmarks/byzsgd.py                       # both runtimes, defaults below
    python benchmarks/byzsgd.py --runtime sim --steps 300
    python benchmarks/byzsgd.py --runtime dist --dist-steps 60

Setting (issue 6): n_w = 10 workers of which f_w = 3 run IPM (eps = 10), MNIST-1D, mlp, b = 25 per
worker, lr 0.05, plain SGD, one torch thread per process. Rows:

* **single server, MDA**: one trusted server (n_ps = 1, f_ps = 0), MDA over the workers'
  gradients (the unrealistic best case ByzSGD is compared against);
* **ByzSGD async**, n_ps = 5, f_ps = 1 (the asynchronous bound n_ps >= 3 f_ps + 2 rules out the
  issue's n_ps = 4), one equivocating Byzantine server;
* **ByzSGD sync**, n_ps = 5, f_ps = 1, and **ByzSGD sync relaxed**, n_ps = 4, f_ps = 1 (the
  issue's setting, allowed by the synchronous variant's majorities ``relaxed: true``).

Simulator (``--runtime sim``): medians of per-step wall times of the lock-step simulation, messages
counted by the simulator. Distributed runtime (``--runtime dist``): real jobs on loopback (one
process per server and per worker, forked from the launcher's forkserver), the median of the correct
servers' per-step wall times (first 5 steps dropped, from their metrics.csv) and the frames each
rank handed to gloo. The distributed single-server row runs the same ByzSGD runtime with one server
(its workers then take that server's model as is), so the rows differ only in the protocol; the
extra row **star runtime, MDA** is the single-server runtime of issue 5 (``scheme: robust,
aggregator: mda``) on the same workers, for the cost of the mesh itself.
All ratios are against the single-server row of the same runtime, measured in the same run.
On a 2-core machine the 15 processes of a 5-server job share two cores: the distributed times say
how much work the protocol adds, not how a cluster with a core per process would scale.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from byzantium.byzsgd import ByzSGDCluster, ByzSGDParams
from byzantium.config import parse_config
from byzantium.runtime.distributed import RuntimeOptions, launch
from byzantium.training.datasets import load_dataset
from byzantium.training.results import read_metrics

N_W, F_W = 10, 3
SETUPS = [  # name, n_ps, f_ps, variant, relaxed, server attack
    ("single server, MDA", 1, 0, "async", False, None),
    ("ByzSGD async n_ps=5", 5, 1, "async", False, "equivocation"),
    ("ByzSGD sync n_ps=5", 5, 1, "sync", False, "equivocation"),
    ("ByzSGD sync relaxed n_ps=4", 4, 1, "sync", True, "equivocation"),
]
KINDS = ("pull", "push", "gather", "request")


def run_sim(ds, steps: int) -> dict[str, dict]:
    out = {}
    for name, n_ps, f_ps, variant, relaxed, srv in SETUPS:
        params = ByzSGDParams(n_ps=n_ps, f_ps=f_ps, n_w=N_W, f_w=F_W, variant=variant, relaxed=relaxed)
        cluster = ByzSGDCluster(params, ds, "mlp", lr=0.05, batch_size=25, seed=0, server_attack=srv,
                                worker_attack="ipm", worker_attack_params={"epsilon": 10.0})
        times, msgs = [], dict.fromkeys(KINDS, 0)
        for _ in range(steps):
            t = time.perf_counter()
            st = cluster.step()
            times.append(time.perf_counter() - t)
            for k, v in st["messages"].items():
                msgs[k] = msgs.get(k, 0) + v
        out[name] = {"ms": 1000 * statistics.median(times), "msgs": {k: v / steps for k, v in msgs.items()},
                     "acc": cluster.evaluate()["acc_mean"], "T": cluster.T}
    return out


def dist_cfg(n_ps: int, f_ps: int, variant: str, relaxed: bool, srv: str | None, steps: int):
    return parse_config({
        "name": "bench-byzsgd", "seed": 0, "workers": N_W,
        "data": {"name": "mnist1d", "train_size": 4000}, "model": {"name": "mlp"},
        "optim": {"lr": 0.05, "momentum": 0.0, "schedule": "constant"},
        "training": {"steps": steps, "batch_size": 25 * N_W, "eval_every": steps, "threads": 1},
        "attack": {"name": "ipm", "q": F_W, "params": {"epsilon": 10.0}},
        "scheme": {"name": "byzsgd"},
        "byzsgd": {"n_ps": n_ps, "f_ps": f_ps, "variant": variant, "relaxed": relaxed,
                   "server_attack": srv or "none"},
    })


def run_dist(steps: int, root: Path) -> dict[str, dict]:
    out = {}
    opts = RuntimeOptions(progress_every=0, threads=1, deadline=30.0)
    for i, (name, n_ps, f_ps, variant, relaxed, srv) in enumerate(SETUPS):
        cfg = dist_cfg(n_ps, f_ps, variant, relaxed, srv, steps)
        run = root / f"run{i}"
        t0 = time.perf_counter()
        s = launch(cfg, run, opts=opts, timeout=600)
        job_s = time.perf_counter() - t0
        per_server = []
        for ps in s["correct_servers"]:
            walls = [r["wall_time"] for r in read_metrics(run / "servers" / f"ps{ps}" / "metrics.csv")]
            deltas = [b - a for a, b in zip(walls[:-1], walls[1:])][5:]
            per_server.append(statistics.median(deltas))
        out[name] = {"ms": 1000 * statistics.median(per_server),
                     "msgs": {k: s["frames_per_step"].get(k, 0.0) for k in KINDS},
                     "acc": s["final_test_accuracy"], "T": s["gather_period"], "job_s": job_s}
        print(f"  ran {name}: {job_s:.1f} s", file=sys.stderr, flush=True)
    cfg = dist_cfg(1, 0, "async", False, None, steps)
    cfg = dataclasses.replace(cfg, scheme=dataclasses.replace(cfg.scheme, name="robust", aggregator="mda"))
    run = root / "star"
    s = launch(cfg, run, opts=opts, timeout=600)
    walls = [r["wall_time"] for r in read_metrics(run / "metrics.csv")]
    deltas = [b - a for a, b in zip(walls[:-1], walls[1:])][5:]
    out["star runtime, MDA"] = {"ms": 1000 * statistics.median(deltas),
                                "msgs": {"pull": float(N_W), "push": float(N_W)},
                                "acc": s["final_test_accuracy"], "T": 0}
    return out


def table(title: str, rows: dict[str, dict]) -> None:
    base = rows["single server, MDA"]
    print(title)
    print(f"{'setup':<28}{'ms/step':>9}{'x single':>9}{'pull':>8}{'push':>8}{'gather':>8}{'request':>8}"
          f"{'msgs/step':>10}{'x single':>9}{'acc':>7}{'T':>4}")
    bm = sum(base["msgs"].values())
    for name, r in rows.items():
        m = r["msgs"]
        tot = sum(m.values())
        print(f"{name:<28}{r['ms']:>9.2f}{r['ms'] / base['ms']:>9.2f}" + "".join(f"{m.get(k, 0):>8.1f}" for k in KINDS)
              + f"{tot:>10.1f}{tot / bm:>9.2f}{r['acc']:>7.3f}{r['T']:>4}")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runtime", choices=["sim", "dist", "both"], default="both")
    ap.add_argument("--steps", type=int, default=200, help="simulator steps per setup")
    ap.add_argument("--dist-steps", type=int, default=60, help="distributed steps per setup")
    args = ap.parse_args()
    torch.set_num_threads(1)
    head = f"n_w={N_W} (f_w={F_W}, IPM eps=10), MNIST-1D mlp, b=25/worker, 1 thread/process"
    if args.runtime in ("sim", "both"):
        ds = load_dataset("mnist1d", train_size=4000, seed=0)
        table(f"simulator: {head}, {args.steps} steps", run_sim(ds, args.steps))
    if args.runtime in ("dist", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            table(f"distributed runtime (loopback): {head}, {args.dist_steps} steps",
                  run_dist(args.dist_steps, Path(tmp)))


if __name__ == "__main__":
    main()
