"""How far one golden record is from another: relative differences of the losses and the model
checksum, the absolute difference of the accuracy. Pure functions, shared by the test and by the
measuring command::

    python tests/golden/drift.py tests/golden/golden.json OTHER.json   # largest drift per field
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

FIELDS = ("train_loss", "test_loss", "test_accuracy", "params.sum", "params.sumsq", "params.head")


def _rel(a: float, b: float, scale: float) -> float:
    if a == b:
        return 0.0
    if not (math.isfinite(a) and math.isfinite(b)) or scale == 0.0:
        return math.inf
    return abs(a - b) / scale


def differences(ref: dict[str, Any], got: dict[str, Any]) -> dict[str, float]:
    """Per field of :data:`FIELDS`: losses relative to the reference; accuracy absolute; the
    model's sum relative to its 2-norm and its first entries relative to its root mean square
    (both estimate the typical relative change of one parameter, also where the sum is near 0);
    the sum of squares relative to itself. ``inf`` when the vectors' sizes differ."""
    p, q = ref["params"], got["params"]
    norm = math.sqrt(p["sumsq"])
    rms = norm / math.sqrt(p["numel"]) if p["numel"] else 0.0
    same_shape = p["numel"] == q["numel"] and len(p["head"]) == len(q["head"])
    return {
        "train_loss": _rel(ref["train_loss"], got["train_loss"], abs(ref["train_loss"])),
        "test_loss": _rel(ref["test_loss"], got["test_loss"], abs(ref["test_loss"])),
        "test_accuracy": abs(ref["test_accuracy"] - got["test_accuracy"]),
        "params.sum": _rel(p["sum"], q["sum"], norm) if same_shape else math.inf,
        "params.sumsq": _rel(p["sumsq"], q["sumsq"], p["sumsq"]) if same_shape else math.inf,
        "params.head": (max((_rel(a, b, rms) for a, b in zip(p["head"], q["head"])), default=0.0)
                        if same_shape else math.inf),
    }


def exceeded(diff: dict[str, float], tol: dict[str, float]) -> dict[str, tuple[float, float]]:
    """The fields whose difference is above its tolerance: ``{field: (difference, tolerance)}``."""
    return {k: (diff[k], tol[k]) for k in FIELDS if not diff[k] <= tol[k]}


def largest(ref_table: dict[str, Any], got_table: dict[str, Any],
            runtime: str) -> dict[str, tuple[float, str]]:
    """Per field, the largest difference over the cases both tables hold, and its case."""
    out: dict[str, tuple[float, str]] = {k: (0.0, "") for k in FIELDS}
    for name, case in ref_table["cases"].items():
        if name in got_table["cases"] and runtime in case and runtime in got_table["cases"][name]:
            for k, v in differences(case[runtime], got_table["cases"][name][runtime]).items():
                if not v <= out[k][0]:
                    out[k] = (v, name)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python tests/golden/drift.py REFERENCE.json OTHER.json", file=sys.stderr)
        return 2
    ref, got = (json.loads(Path(p).read_text()) for p in argv)
    print(f"reference: {ref['fingerprint']}\nother:     {got['fingerprint']}")
    for runtime in ("simulator", "distributed"):
        print(f"{runtime}:")
        for k, (v, name) in largest(ref, got, runtime).items():
            print(f"  {k:<14} {v:.3e}  ({name or '-'})")
        for name, case in ref["cases"].items():
            if runtime in case and runtime in got["cases"].get(name, {}):
                d = differences(case[runtime], got["cases"][name][runtime])
                print(f"    {name:<18} " + "  ".join(f"{k}={v:.1e}" for k, v in d.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
