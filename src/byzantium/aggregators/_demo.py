"""``byzantium aggregators-demo``: every registered rule against three simple attacks.

Synthetic honest gradients x_i ~ N(mu, sigma^2 I) (n - f of them) and f Byzantine rows; the table
shows the relative error ||agg - mean(honest)|| / ||mean(honest)|| and the time of each rule.
"""

from __future__ import annotations

import time

import torch

from . import REGISTRY, get

ATTACKS = {
    "outliers (1e6)": lambda honest, f, g: torch.full((f, honest.shape[1]), 1e6, dtype=honest.dtype),
    "sign flip": lambda honest, f, g: (-honest.mean(0)).expand(f, -1).clone(),
    "ALIE (z=1)": lambda honest, f, g: (honest.mean(0) + honest.std(0)).expand(f, -1).clone(),
}

PARAMS = {"bucketing": {"s": 2}, "clip": {"tau": 10.0}}


def run_demo(n: int = 25, f: int = 5, d: int = 20000, seed: int = 0) -> int:
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(d, generator=g)
    honest = mu + 2.0 * torch.randn(n - f, d, generator=g)
    ref = honest.mean(0)
    rules = sorted(k for k, e in REGISTRY.items() if e.kind == "rule")
    header = f"{'rule':<18}" + "".join(f"{a:>18}" for a in ATTACKS) + f"{'ms':>9}"
    print(f"n={n} inputs, f={f} Byzantine, d={d}; relative error to the honest mean (lower is better)")
    print(header)
    print("-" * len(header))
    for name in rules:
        kwargs = {"f": f} if "f" in REGISTRY[name].params else {}
        kwargs.update(PARAMS.get(name, {}))
        try:
            agg = get(name, **kwargs)
            agg.check(n)
        except ValueError as e:
            print(f"{name:<18}  skipped: {e}")
            continue
        cells, ms = [], []
        for attack in ATTACKS.values():
            grads = torch.cat([honest, attack(honest, f, g)])
            t = time.perf_counter()
            out = agg(grads)
            ms.append(1000 * (time.perf_counter() - t))
            cells.append(float((out - ref).norm() / ref.norm()))
        print(f"{name:<18}" + "".join(f"{c:>18.3g}" for c in cells) + f"{sorted(ms)[1]:>9.1f}")
    return 0
