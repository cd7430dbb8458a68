"""Golden behaviour table: today's results of the demo's schemes and of ByzSGD (async and sync),
in the simulator and in the real multi-process runtime, pinned before the redesign.

Every case of :func:`cases.golden_cases` (``configs/demo.yaml``'s ``compare:`` entries under its
ALIE attack, q = 3, worst-case placement; ``configs/byzsgd.yaml`` and ``configs/byzsgd_sync.yaml``'s
``scheme:``; 60 steps each) is rerun through the public entry points and read back from its run
directory (see ``runtimes.py``, ``readout.py``), then compared with ``golden.json``:

* **same machine** (the fingerprint, ``fingerprint.py``, equals the recorded one):
  the simulator must give the recorded record bit for bit (losses, accuracy, model checksum);
  the real runtime within :data:`TOL_DISTRIBUTED` (or :data:`TOL_ARRIVAL_ORDER`, below).
* **cross-CPU** (another CPU, torch build or dispatch setting): both runtimes within
  :data:`TOL_CROSS_CPU` (or :data:`TOL_ARRIVAL_ORDER`).

Each assertion message names the mode it used.

Re-recording (``python tests/golden/record.py`` on a quiet machine with no dispatch variables
set, then commit ``golden.json``) is allowed only when a change of behaviour is intended: a bug
fix, a new convention, a changed default. The commit that re-records must say which cases moved,
by how much (``python tests/golden/drift.py OLD.json tests/golden/golden.json``) and why.
A refactor that claims to keep behaviour must pass this test unchanged; never re-record to make
a refactor pass, and never widen a tolerance without measuring (the measurements are below).
Recording on another machine also changes the fingerprint: the simulator is then compared bit for
bit on that machine and with :data:`TOL_CROSS_CPU` everywhere else.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .cases import golden_cases
from .drift import differences, exceeded
from .fingerprint import machine_fingerprint
from .readout import read_run
from .runtimes import DistributedRuntime, run_simulator

GOLDEN = Path(__file__).with_name("golden.json")

# Measured on the recording machine (AMD EPYC, torch 2.13.0+cpu, AVX512), by rerunning the whole
# table (record.py --out) and comparing with drift.py; differences as defined by
# drift.differences (losses relative, accuracy absolute, model sum / first entries relative to the
# model's 2-norm / rms, sum of squares relative).

TOL_DISTRIBUTED = {"train_loss": 1e-6, "test_loss": 1e-6, "test_accuracy": 0.002,
                   "params.sum": 1e-6, "params.sumsq": 1e-6, "params.head": 1e-6}
"""Real runtime, same machine, cases whose result does not depend on the arrival order. Measured:
bit-identical in 3 recordings at load 10-35 on 2 cores (each rank computes the same fused gradient
passes every time, the server aggregates in worker order). The README ("Many processes") puts
the real runtime within ~1e-7 relative of the simulator (measured here: model checksums within
5e-8); 1e-6 (10x that) leaves the last-bit effects room, 0.002 is two test samples of 1000."""

TOL_CROSS_CPU = {"train_loss": 1e-4, "test_loss": 1e-4, "test_accuracy": 0.005,
                 "params.sum": 5e-3, "params.sumsq": 5e-5, "params.head": 5e-3}
"""Another CPU or dispatch. Measured, both runtimes, largest over the cases (not counting the
arrival-order ones in the real runtime), under ATEN_CPU_CAPABILITY=default / =avx2 /
MKL_CBWR=COMPATIBLE MKL_ENABLE_INSTRUCTIONS=AVX2:
train loss 5.0e-6 / 1.1e-7 / 3.9e-6, test loss 2.7e-6 / 1.1e-7 / 7.6e-7, accuracy 0 / 0 / 0.001,
model sum 2.8e-4 / 5.6e-8 / 2.7e-4, sum of squares 1.7e-6 / 1.5e-9 / 6.4e-7, first entries
1.9e-4 / 1.9e-7 / 8.0e-5 (the largest in dSTAR-I and DETOX, whose selections amplify a last-bit
change over 60 steps). Tolerances are 18-30x the largest of them (accuracy: 5 test samples)."""

TOL_ARRIVAL_ORDER = {"train_loss": 3e-2, "test_loss": 3e-2, "test_accuracy": 0.05,
                     "params.sum": 3.0, "params.sumsq": 3e-2, "params.head": 0.1}
"""Real runtime, cases whose result depends on which messages arrive first (:data:`ARRIVAL_ORDER`),
on any machine. Measured over 11 other runs (load 3-35 on 2 cores, 3 of them under the dispatch
settings above, which move these cases far less than the arrival order does), largest drift from
the recorded run: dSTAR-I train loss 6.7e-3, test loss 5.7e-3, accuracy 0.012, model sum 0.85,
sum of squares 4.7e-3, first entries 2.0e-2; ByzSGD async 1.9e-3, 1.6e-3, 0.006, 0.16, 4.5e-4,
1.1e-2. Tolerances are 3.5-6x the larger of the two (the model sum, the weakest check here)."""

ARRIVAL_ORDER = {
    "demo.dstar": "dSTAR-I aggregates the first k = 12 of the 15 gradients to arrive",
    "byzsgd.async": "asynchronous ByzSGD parties go on with the first quorum of messages",
    # bit-identical on a quiet machine, but a gradient that misses the bounded delay (1 s) on a
    # loaded one is left out: measured 1.4e-5 loss, 2.8e-3 model sum at load ~10
    "byzsgd.sync": "synchronous ByzSGD takes what arrived within the bounded delay",
}

CASES = golden_cases()
IDS = [c.name for c in CASES]


@pytest.fixture(scope="module")
def golden() -> dict:
    if not GOLDEN.exists():
        pytest.fail(f"{GOLDEN} is missing: record it with python tests/golden/record.py")
    return json.loads(GOLDEN.read_text())


@pytest.fixture(scope="module")
def mode(golden) -> str:
    """``same machine`` when this machine's fingerprint equals the recorded one, else
    ``cross-CPU``."""
    return "same machine" if machine_fingerprint() == golden["fingerprint"] else "cross-CPU"


@pytest.fixture(scope="module")
def distributed():
    """One runtime for every distributed case; it and every rank it forked are
    killed by PID at the end, also when a test failed."""
    with DistributedRuntime() as rt:
        yield rt


def _recorded(golden: dict, name: str, runtime: str) -> dict:
    entry = golden["cases"].get(name)
    if entry is None or runtime not in entry:
        pytest.fail(f"golden.json has no {runtime} record of case {name!r}: re-record (see the "
                    "module docstring) only if the case set changed on purpose")
    return entry[runtime]


def _describe(mode: str, golden: dict) -> str:
    if mode == "same machine":
        return "mode: same machine (fingerprint equals the recorded one)"
    now = machine_fingerprint()
    moved = {k: (golden["fingerprint"].get(k), now.get(k)) for k in now
             if golden["fingerprint"].get(k) != now.get(k)}
    return f"mode: cross-CPU (fingerprint differs, recorded -> now: {moved})"


def _check(name: str, runtime: str, want: dict, got: dict, tol: dict, how: str) -> None:
    bad = exceeded(differences(want, got), tol)
    assert not bad, (
        f"{name} ({runtime}), {how}: outside the tolerance {tol}:\n"
        + "\n".join(f"  {k}: {d:.3e} > {t:.1e}" for k, (d, t) in bad.items())
        + f"\nrecorded {want}\nnow      {got}"
    )


def test_the_table_holds_exactly_the_current_cases(golden) -> None:
    """The recorded cases and their settings are today's (a changed config entry or case list is
    a re-recording, not a silent pass)."""
    assert sorted(golden["cases"]) == sorted(IDS)
    for case in CASES:
        rec = golden["cases"][case.name]
        assert (rec["config"], rec["overrides"]) == (case.config, case.settings()), case.name


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_simulator_matches_the_golden_table(case, golden, mode, tmp_path) -> None:
    want = _recorded(golden, case.name, "simulator")
    run_simulator(case, tmp_path / "run")
    got = read_run(tmp_path / "run")
    how = _describe(mode, golden)
    if mode == "same machine":
        assert got == want, (f"{case.name} (simulator), {how}: not bit for bit the recorded run; "
                             f"differences {differences(want, got)}\nrecorded {want}\nnow      {got}")
    else:
        _check(case.name, "simulator", want, got, TOL_CROSS_CPU, how + ", TOL_CROSS_CPU")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_distributed_runtime_matches_the_golden_table(case, golden, mode, distributed, tmp_path) -> None:
    want = _recorded(golden, case.name, "distributed")
    distributed.run(case, tmp_path / "run")
    got = read_run(tmp_path / "run")
    how = _describe(mode, golden)
    if case.name in ARRIVAL_ORDER:
        tol, which = TOL_ARRIVAL_ORDER, f"TOL_ARRIVAL_ORDER ({ARRIVAL_ORDER[case.name]})"
    elif mode == "same machine":
        tol, which = TOL_DISTRIBUTED, "TOL_DISTRIBUTED"
    else:
        tol, which = TOL_CROSS_CPU, "TOL_CROSS_CPU"
    _check(case.name, "distributed", want, got, tol, f"{how}, {which}")
