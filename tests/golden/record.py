"""Record the golden behaviour table: every golden case in the simulator and as a real
multi-process job, from the current code, on this machine::

    python tests/golden/record.py                      # writes tests/golden/golden.json
    python tests/golden/record.py --out /tmp/t.json    # a table to compare (drift.py), e.g. under
                                                       # ATEN_CPU_CAPABILITY=avx2

See test_golden.py's docstring for when re-recording golden.json is allowed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: this checkout's byzantium, this folder as tests.golden
    _repo = Path(__file__).resolve().parents[2]
    sys.path[:0] = [str(_repo / "src"), str(_repo)]
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(_repo / "src"), os.environ.get("PYTHONPATH")]))
    from tests.golden.cases import REPO, STEPS, golden_cases
    from tests.golden.fingerprint import machine_fingerprint
    from tests.golden.readout import read_run
    from tests.golden.runtimes import DistributedRuntime, run_simulator
else:
    from .cases import REPO, STEPS, golden_cases
    from .fingerprint import machine_fingerprint
    from .readout import read_run
    from .runtimes import DistributedRuntime, run_simulator

RUNTIMES = ("simulator", "distributed")


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def record(only: list[str] | None = None, runtimes: tuple[str, ...] = RUNTIMES) -> dict:
    """Run the cases (all, or those named in ``only``) and return the table."""
    cases = [c for c in golden_cases() if not only or c.name in only]
    table = {"fingerprint": machine_fingerprint(), "steps": STEPS, "code_commit": _commit(),
             "cases": {}}
    with tempfile.TemporaryDirectory(prefix="golden-") as tmp, DistributedRuntime() as dist:
        for case in cases:
            entry = {"label": case.label, "config": case.config, "overrides": list(case.settings())}
            for runtime in runtimes:
                run_dir = Path(tmp) / case.name / runtime
                t0 = time.perf_counter()
                via = run_simulator(case, run_dir) if runtime == "simulator" else dist.run(case, run_dir)
                entry[runtime] = read_run(run_dir)
                r = entry[runtime]
                print(f"{case.name:<18} {runtime:<11} loss {r['train_loss']:.6f}  test loss "
                      f"{r['test_loss']:.6f}  acc {r['test_accuracy']:.4f}  "
                      f"({via}, {time.perf_counter() - t0:.1f} s)", flush=True)
            table["cases"][case.name] = entry
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "golden.json")
    ap.add_argument("--case", action="append", help="only this case (repeatable)")
    ap.add_argument("--runtime", choices=RUNTIMES, action="append", help="only this runtime")
    args = ap.parse_args(argv)
    import byzantium

    print(f"recording byzantium from {Path(byzantium.__file__).parent}")
    table = record(args.case, tuple(args.runtime or RUNTIMES))
    args.out.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
