"""Cost of per-file gradients relative to one plain forward+backward of the same batch.

For each model: a batch of b examples split into f files (default b=250, f=25: ByzShield MOLS
l=5, r=3), timed in interleaved rounds (so background load hits every method alike), medians.

    plain : model.zero_grad(); loss_fn(model(x_batch), y_batch).backward()
    fused / vmap / loop : per_file_gradients(..., method=...)  -> (f, d)

Prints median milliseconds and the ratio to plain (and the ratio of the minima); the target is
fused <= 1.5x plain for cnn1d and mlp on MNIST-1D. On a shared machine, ``--threads 1 --clock cpu``
(this thread's CPU time) is far less noisy than wall time. Usage:

    python benchmarks/pergrad.py [--rounds 40] [--models logreg,mlp,cnn1d,lenet,resnet18]
                                 [--device cpu|cuda] [--resnet-width 4] [--threads N] [--clock cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from byzantium.training import Dataset, build_model, load_dataset, loss_fn, per_file_gradients
from byzantium.training.pergrad import choose_method


def fake_images(shape: tuple[int, ...], n: int = 1000, seed: int = 0) -> Dataset:
    """Random CIFAR-shaped data (the benchmark needs shapes, not CIFAR's pixels)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return Dataset("fake-cifar", x, y, x[:10], y[:10], 10, shape)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(model, lf, x_files, y_files, rounds: int, methods: list[str], device, clock) -> dict[str, tuple[float, float]]:
    f, m = x_files.shape[:2]
    xb, yb = x_files.reshape(f * m, *x_files.shape[2:]), y_files.reshape(-1)

    def plain() -> None:
        model.zero_grad(set_to_none=True)
        lf(model(xb), yb).backward()

    fns = {"plain": plain}
    for meth in methods:
        fns[meth] = lambda meth=meth: per_file_gradients(model, lf, x_files, y_files, method=meth)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():  # warm-up
        for _ in range(3):
            fn()
    sync(device)
    for _ in range(rounds):
        for k, fn in fns.items():
            t = clock()
            fn()
            sync(device)
            times[k].append(clock() - t)
    return {k: (statistics.median(v) * 1e3, min(v) * 1e3) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--files", type=int, default=25)
    ap.add_argument("--models", default="logreg,mlp,cnn1d,lenet,resnet18")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--resnet-width", type=int, default=4)
    ap.add_argument("--resnet-norm", default="group")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave)")
    ap.add_argument("--no-loop", action="store_true", help="skip the per-file loop (slow for big models)")
    ap.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall",
        help="cpu: this thread's CPU time (needs --threads 1; robust to other processes on a shared machine)",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.clock == "cpu" and (torch.get_num_threads() != 1 or device.type != "cpu"):
        ap.error("--clock cpu needs --threads 1 and --device cpu")
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    mnist = load_dataset("mnist1d", train_size=1000)
    digits = load_dataset("digits")
    cifar = fake_images((3, 32, 32))
    cases = {
        "logreg": [("mnist1d", mnist, {})],
        "mlp": [("mnist1d", mnist, {})],
        "cnn1d": [("mnist1d", mnist, {})],
        "lenet": [("digits", digits, {}), ("32x32x3", cifar, {})],
        "resnet18": [("32x32x3", cifar, {"width": args.resnet_width, "norm": args.resnet_norm})],
    }
    f, m = args.files, args.batch // args.files
    methods = ["fused", "vmap"] + ([] if args.no_loop else ["loop"])
    print(
        f"device={device} threads={torch.get_num_threads()} clock={args.clock} b={f * m} files={f} m={m} "
        f"rounds={args.rounds}; ms = median, x = median ratio to plain (ratio of minima in brackets)"
    )
    header = f"{'model':<10}{'data':<10}{'params':>9}{'plain ms':>10}" + "".join(
        f"{k + ' ms':>10}{k + ' x':>16}" for k in methods
    ) + "   auto"
    print(header)
    for name in args.models.split(","):
        for label, ds, kw in cases[name]:
            model = build_model(name, ds, seed=0, **kw).to(device)
            lf = loss_fn(ds)
            g = torch.Generator().manual_seed(1)
            idx = torch.randperm(ds.num_train, generator=g)[: f * m].view(f, m)
            xf, yf = ds.x_train[idx].to(device), ds.y_train[idx].to(device)
            per_file_gradients(model, lf, xf, yf)  # auto: one-time selection
            meths = [k for k in methods if not (k == "fused" and choose_method(model) != "fused")]
            t = bench(model, lf, xf, yf, args.rounds, meths, device, clock)
            d = sum(p.numel() for p in model.parameters())
            (pl, pl_min) = t["plain"]
            row = f"{name:<10}{label:<10}{d:>9}{pl:>10.2f}"
            for k in methods:
                if k in t:
                    ratio = f"{t[k][0] / pl:.2f} ({t[k][1] / pl_min:.2f})"
                    row += f"{t[k][0]:>10.2f}{ratio:>16}"
                else:
                    row += f"{'-':>10}{'-':>16}"
            print(row + f"   {choose_method(model)}", flush=True)


if __name__ == "__main__":
    main()
