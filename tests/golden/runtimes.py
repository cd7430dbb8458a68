"""Run a golden case in the simulator or as a real multi-process job, into a run directory.

Only this module touches byzantium's Python API, and only its public entry points: config loading
with ``--set`` overrides (``byzantium.config.load_config``), ``run_training`` and the local
launcher (``byzantium.runtime.distributed.launch``, whose forkserver serves every job of the
process). With ``GOLDEN_VIA=cli`` the same run goes through the ``byzantium`` command instead
(``train`` / ``launch`` with ``--set`` and ``--out``). Both paths run the same computation into
the same run-directory format (measured: the same numbers); the command costs a fresh
interpreter per job (about 8 s more per distributed case).
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .cases import Case

JOB_TIMEOUT = 150.0
"""Seconds one job may run before it is killed (a 60-step case takes 2-10 s on 2 idle cores)."""


def _via_cli() -> bool:
    return os.environ.get("GOLDEN_VIA", "api") == "cli"


def _api() -> dict[str, Any] | None:
    """The Python entry points, or None with ``GOLDEN_VIA=cli`` (then the command is used)."""
    if _via_cli():
        return None
    from byzantium.config import load_config
    from byzantium.runtime.distributed import RuntimeOptions, launch
    from byzantium.runtime.run import run_training

    return {"load_config": load_config, "run_training": run_training, "launch": launch,
            "RuntimeOptions": RuntimeOptions}


def _command() -> list[str]:
    """``python -c <console script>``: the installed ``byzantium`` entry point, run by this
    interpreter (so PYTHONPATH and the environment carry over)."""
    eps = importlib.metadata.entry_points(group="console_scripts", name="byzantium")
    target = next(iter(eps)).value if eps else "byzantium.cli:main"
    module, _, attr = target.partition(":")
    return [sys.executable, "-c", f"import sys; from {module} import {attr} as m; sys.exit(m())"]


def _run_command(args: list[str]) -> None:
    out = subprocess.run([*_command(), *args], capture_output=True, text=True,
                         timeout=JOB_TIMEOUT + 30)
    if out.returncode != 0:
        raise RuntimeError(f"byzantium {' '.join(args)} exited {out.returncode}:\n"
                           f"{out.stdout[-2000:]}\n{out.stderr[-2000:]}")


def _set_args(case: Case) -> list[str]:
    return [a for s in case.settings() for a in ("--set", s)]


def run_simulator(case: Case, run_dir: Path) -> str:
    """Train ``case`` in the simulator into ``run_dir``; return how it was started."""
    api = _api()
    if api is None:
        _run_command(["train", str(case.config_path()), *_set_args(case), "--out", str(run_dir),
                      "--no-progress"])
        return "byzantium train"
    cfg = api["load_config"](case.config_path(), case.settings())
    api["run_training"](cfg, Path(run_dir), progress=False)
    return "run_training"


class DistributedRuntime:
    """Runs cases as real local jobs (one process per rank on loopback). Each job's ranks are
    killed by PID by the launcher when the job ends or fails (``launch`` closes its job in every
    case)."""

    def __init__(self) -> None:
        self._api = _api()

    def __enter__(self) -> "DistributedRuntime":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    def run(self, case: Case, run_dir: Path) -> str:
        """Run ``case`` as a job into ``run_dir``; return how it was started."""
        if self._api is None:
            _run_command(["launch", str(case.config_path()), *_set_args(case), "--out", str(run_dir),
                          "--no-progress", "--timeout", str(int(JOB_TIMEOUT))])
            return "byzantium launch"
        cfg = self._api["load_config"](case.config_path(), case.settings())
        opts = self._api["RuntimeOptions"](progress_every=0)
        self._api["launch"](cfg, Path(run_dir), opts=opts, timeout=JOB_TIMEOUT)
        return "launch"
