"""How ranks start: forked from one forkserver that imported torch once (or exec'd), each an
independent process; a rank that cannot start or ends before the rendezvous is reported; a
killed launcher takes its ranks down."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from byzantium.config import to_dict
from byzantium.runtime.distributed import launcher
from byzantium.runtime.distributed.cli import add_launch_parsers, rank_spec
from byzantium.runtime.distributed.launcher import Launch, LaunchError
from byzantium.runtime.distributed.options import RuntimeOptions, parse_fault
from byzantium.runtime.distributed.ranks import RankSpec

from .conftest import tiny_cfg

LONG = {"steps": 100_000, "batch_size": 90, "eval_every": 100_000, "eval_batch_size": 500,
        "checkpoint_every": 0}


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent PID, start time) of ``pid`` from /proc, None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[19])


def _gone(pid: int) -> bool:
    st = _stat(pid)
    return st is None or st[0] in ("Z", "X")  # a zombie has ended (its reaper may be slow)


def test_every_preloaded_module_imports() -> None:
    """The forkserver skips a preload entry that fails to import without a word (its ranks then
    import it themselves, slowly): every entry must import. The forkserver's set-up module, imported
    anywhere but in the forkserver, must not install its os._exit hook (it would hide this
    process's exit code)."""
    for name in launcher.PRELOAD:
        importlib.import_module(name)
    setup = importlib.import_module("byzantium.runtime.distributed.forkserver_setup")
    assert launcher.PRELOAD[-1] == setup.__name__ and not hasattr(setup, "_exit_at_once")


@pytest.mark.parametrize("spec", [
    RankSpec("serve", "c.yaml", overrides=("attack.q=1",), out="run", resume=True, session=7,
             opts=RuntimeOptions(deadline=0.5, threads=2, faults=(parse_fault("ps1:kill@3"),))),
    RankSpec("work", "c.yaml", out="run", resume_step=4, session=9,
             opts=RuntimeOptions(evict_timeout=2.0, faults=(parse_fault("2:nan@1,3"),))),
    RankSpec("work", "c.yaml"),
], ids=["serve", "work", "work-defaults"])
def test_exec_ranks_run_the_spec_forked_ranks_get(spec) -> None:
    """An exec'd rank parses ``spec.argv()``; the command line must describe the same rank."""
    p = argparse.ArgumentParser()
    add_launch_parsers(p.add_subparsers(dest="command", required=True))
    back = rank_spec(p.parse_args(spec.argv()))
    if spec.role == "work" and spec.resume_step is None:  # the work command's default is 0
        back = RankSpec(**{**back.__dict__, "resume_step": None})
    assert back == spec


def test_a_rank_that_ends_before_the_rendezvous_aborts_the_job(jobs, tmp_path) -> None:
    """The last rank forked is SIGKILLed at once (it cannot have joined): the launcher names it
    and its code, kills every other rank, and every exit code is known."""
    cfg = tiny_cfg(workers=3, training=LONG)
    job = jobs(cfg, tmp_path / "run", opts=RuntimeOptions(progress_every=0))
    last = max(job.pids)
    job.kill(last)
    with pytest.raises(LaunchError, match=rf"rank\(s\) \[{last}\] exited \(codes \{{{last}: -9\}}\) "
                                          r"before the rendezvous; every process was killed"):
        job.wait(timeout=60)
    assert all(rc is not None for rc in job.returncodes().values())


def test_a_rank_that_cannot_be_started_is_reported(tmp_path) -> None:
    """exec with an interpreter that does not exist: LaunchError naming the rank and its log."""
    job = Launch(tiny_cfg(workers=2), tmp_path / "run", start="exec",
                 python=str(tmp_path / "no-such-python"))
    with pytest.raises(LaunchError, match=r"rank 0 \(server\.log\) did not start: .*could not be "
                                          r"started.*FileNotFoundError"):
        job.start()
    assert job.pids == {}
    with pytest.raises(ValueError, match="python=.* needs start='exec'"):
        Launch(tiny_cfg(workers=2), tmp_path / "r2", python="/usr/bin/python3-other")
    with pytest.raises(ValueError, match="start must be one of forkserver, exec, got 'zygote'"):
        Launch(tiny_cfg(workers=2), tmp_path / "r3", start="zygote")


LAUNCHER = """
import json, sys, time
from byzantium.config import parse_config
from byzantium.runtime.distributed.launcher import Launch
from byzantium.runtime.distributed.options import RuntimeOptions
job = Launch(parse_config(json.loads(sys.argv[1])), sys.argv[2], start=sys.argv[3],
             opts=RuntimeOptions(progress_every=0)).start()
print(json.dumps(job.pids), flush=True)
time.sleep(300)
"""


@pytest.mark.parametrize("start", ["forkserver", "exec"])
def test_ranks_are_separate_processes_and_die_with_a_killed_launcher(start, tmp_path) -> None:
    """A launcher process starts a long job and is SIGKILLed once the job runs. Forked ranks are
    children of one forkserver (not of the launcher) that has torch loaded; exec'd ranks are the
    launcher's own children. Either way every rank (and the forkserver) is gone within 20 s."""
    cfg = tiny_cfg(workers=3, training=LONG)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, json.dumps(to_dict(cfg)),
                             str(tmp_path / "run"), start], stdout=subprocess.PIPE, env=env, text=True)
    seen: dict[int, tuple[str, int, int]] = {}
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout=120), "the launcher printed no PIDs within 120 s"
        pids = {int(r): p for r, p in json.loads(proc.stdout.readline()).items()}
        assert sorted(pids) == [0, 1, 2, 3] and len(set(pids.values())) == 4
        for pid in pids.values():
            st = _stat(pid)
            assert st is not None, pid
            seen[pid] = st
        parents = {st[1] for st in seen.values()}
        if start == "exec":
            assert parents == {proc.pid}
        else:
            (server,) = parents
            assert server != proc.pid and _stat(server)[1] == proc.pid
            assert "libtorch" in Path(f"/proc/{server}/maps").read_text()
            seen[server] = _stat(server)
        log = tmp_path / "run" / "logs" / "server.log"  # every rank past its start-up: running
        end = time.monotonic() + 120
        while time.monotonic() < end and "workers joined" not in log.read_text():
            time.sleep(0.1)
        assert "workers joined" in log.read_text()
        proc.kill()
        proc.wait(timeout=10)
        end = time.monotonic() + 20
        while time.monotonic() < end and not all(_gone(p) for p in seen):
            time.sleep(0.1)
        assert [p for p in seen if not _gone(p)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for pid, st in seen.items():  # anything left over (a failed test): same process only
            now = _stat(pid)
            if now is not None and now[2] == st[2] and now[0] not in ("Z", "X"):
                os.kill(pid, signal.SIGKILL)
        if proc.stdout:
            proc.stdout.close()
