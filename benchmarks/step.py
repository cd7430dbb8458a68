"""Cost of one simulated training step per scheme, relative to a plain single-process SGD step.

    python benchmarks/step.py                 # MNIST-1D, cnn1d, K=15, b=300, q=3 ALIE
    python benchmarks/step.py --model mlp --threads 1

The plain step is what a single process does with the same batch and model: one forward and
backward pass over the b samples, then the optimizer step. A scheme's step is everything the
simulator does for it: sampling the files, the per-file gradients (computed once per file and
shared by its replicas), stragglers, the attack, voting/decoding, aggregation and the optimizer
step. Printed: median times over several repetitions (interleaved, so background load hits every
row alike) and the ratio to the plain step measured in the same run. Target (issue 4): ByzShield
MOLS l=5, r=3 <= 1.5x.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from byzantium.config import parse_config
from byzantium.runtime.job import build_job
from byzantium.runtime.simulator import SimulatedCluster
from byzantium.training.datasets import load_dataset
from byzantium.runtime.update import assign_flat_grad, make_optimizer
from byzantium.training.models import build_model, loss_fn

SCHEMES = [
    ("vanilla (mean)", {"name": "vanilla"}),
    ("median", {"name": "robust", "aggregator": "median"}),
    ("multi-Krum", {"name": "robust", "aggregator": "multi_krum"}),
    ("DETOX r=3, median", {"name": "detox", "r": 3, "aggregator": "median"}),
    ("ByzShield MOLS l=5 r=3, median", {"name": "byzshield", "r": 3, "aggregator": "median"}),
    ("ByzShield MOLS l=5 r=3, multi-Krum", {"name": "byzshield", "r": 3, "aggregator": "multi_krum"}),
    ("DRACO cyclic s=3", {"name": "draco_cyclic", "s": 3}),
    ("DRACO repetition s=1 (q=1)", {"name": "draco_repetition", "s": 1, "q": 1}),
    ("dSTAR-I k=12", {"name": "dstar", "k": 12}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="cnn1d")
    ap.add_argument("--batch", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--attack", default="alie")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    raw = {
        "workers": 15,
        "data": {"name": "mnist1d", "train_size": 4000},
        "model": {"name": args.model},
        "training": {"steps": 10_000, "batch_size": args.batch},
        "attack": {"name": args.attack, "q": 3},
    }
    cfg = parse_config(raw)
    ds = load_dataset("mnist1d", train_size=4000, seed=0)

    # plain single-process step on the same batch size and model
    model = build_model(args.model, ds, seed=0)
    opt, _ = make_optimizer(model, cfg)
    lf = loss_fn(ds)
    gen = torch.Generator().manual_seed(0)

    def plain(step: int) -> None:
        idx = torch.randperm(ds.x_train.shape[0], generator=gen)[: args.batch]
        opt.zero_grad()
        lf(model(ds.x_train[idx]), ds.y_train[idx]).backward()
        opt.step()

    runners = {"plain SGD step": plain}
    for label, sc in SCHEMES:
        c = parse_config({**raw, "scheme": sc})
        job = build_job(c, dataset=ds)
        m = job.model
        cluster = SimulatedCluster(job)
        o, _ = make_optimizer(m, c)
        params = [p for p in m.parameters() if p.requires_grad]

        def run(step: int, cluster=cluster, o=o, params=params) -> None:
            out = cluster.step(step)
            assign_flat_grad(params, out.gradient)
            o.step()

        runners[label] = run

    times: dict[str, list[float]] = {k: [] for k in runners}
    for warm in range(2):
        for fn in runners.values():
            fn(warm)
    for rep in range(args.repeats):
        for name, fn in runners.items():
            t = time.perf_counter()
            fn(rep + 2)
            times[name].append(time.perf_counter() - t)

    base = statistics.median(times["plain SGD step"])
    print(f"model={args.model} batch={args.batch} K=15 q=3 attack={args.attack} "
          f"threads={torch.get_num_threads()} repeats={args.repeats}")
    print(f"{'step':<36}{'median ms':>10}{'x plain':>9}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<36}{1000 * med:>10.2f}{med / base:>9.2f}")


if __name__ == "__main__":
    main()
