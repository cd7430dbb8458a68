"""Start-up time of a local job: from ``Launch.start()`` to every rank running.

    python benchmarks/startup.py                  # K = 6, 3 jobs in this process
    python benchmarks/startup.py --workers 15 --jobs 5

Every job is a real server + K worker processes (logistic data, a linear model, 3 steps), started
with the launcher's default start method. Per job it prints, in seconds since ``start()`` was
called:

* ``pids``: ``start()`` returned (every rank has a PID);
* ``joined``: the server printed "workers joined" (every rank has imported what it needs, built
  its data and model and completed the rendezvous: the job is running);
* ``done``: ``wait()`` returned (the whole job, 3 steps, evaluation and plot included).

The first job of a process also starts the process the ranks are forked from (``cold``); later
jobs reuse it (``warm``, as in the test suite). For several cold samples run the script several
times; the last line is the median over this process's warm jobs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from byzantium.config import parse_config
from byzantium.runtime.distributed import Launch, RuntimeOptions


def _cfg(workers: int):
    return parse_config({
        "name": "startup", "seed": 0, "workers": workers,
        "data": {"name": "logistic", "train_size": 600, "validation_size": 60,
                 "params": {"dim": 10, "num_classes": 3}},
        "model": {"name": "logreg"},
        "optim": {"lr": 0.1, "schedule": "constant"},
        "training": {"steps": 3, "batch_size": 90, "eval_every": 3, "eval_batch_size": 500,
                     "checkpoint_every": 3},
        "scheme": {"name": "vanilla"},
    })


def _time_job(cfg, run: Path) -> dict[str, float]:
    log = run / "logs" / "server.log"
    t0 = time.perf_counter()
    with Launch(cfg, run, opts=RuntimeOptions(progress_every=0)) as job:
        pids = time.perf_counter() - t0
        end = t0 + 120.0
        while "workers joined" not in (text := log.read_text() if log.exists() else ""):
            if job.returncode(0) is not None:
                raise RuntimeError(f"{run}: the server exited with {job.returncode(0)}:\n{text[-500:]}")
            if time.perf_counter() > end:
                raise TimeoutError(f"{run}: no 'workers joined' within 120 s")
            time.sleep(0.005)
        joined = time.perf_counter() - t0
        rc = job.wait(timeout=120)
        done = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError(f"{run}: the server exited with {rc}")
    return {"pids": pids, "joined": joined, "done": done}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=6, metavar="K")
    ap.add_argument("--jobs", type=int, default=3, help="jobs in this process (the first is cold)")
    args = ap.parse_args()
    cfg = _cfg(args.workers)
    root = Path(tempfile.mkdtemp(prefix="byz-startup-"))
    warm = []
    for i in range(args.jobs):
        t = _time_job(cfg, root / f"job{i}")
        print(json.dumps({"job": i, "kind": "cold" if i == 0 else "warm", "workers": args.workers,
                          **{k: round(v, 3) for k, v in t.items()}}), flush=True)
        if i:
            warm.append(t)
    if warm:
        print(json.dumps({"kind": "warm median", "workers": args.workers,
                          **{k: round(statistics.median(t[k] for t in warm), 3) for k in warm[0]}}))


if __name__ == "__main__":
    main()
