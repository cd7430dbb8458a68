"""Runtime options of the distributed runtime (not part of the experiment's YAML: they describe how
a run is executed, not what is trained) and the fault-injection plan used by tests and demos."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .faults import FREEZE_SECONDS, OptionsError, fault_kinds

__all__ = ["RuntimeOptions", "Fault", "FAULT_KINDS", "SERVER_FAULT_KINDS", "parse_fault", "OptionsError",
           "FREEZE_SECONDS"]

FAULT_KINDS = fault_kinds("worker")
"""Faults a worker can inject (:data:`.faults.FAULTS` says what each does)."""

SERVER_FAULT_KINDS = fault_kinds("server")
"""Faults a (ByzSGD) parameter server can inject: ``psS:kill@STEP`` / ``psS:stop@STEP`` /
``psS:freeze@STEP`` (the whole process, its receivers included, stops for ``FREEZE_SECONDS``
and then goes on: a machine that froze, its peers' frames to it replaced in their outboxes)."""

SYNC_DEFAULT_DEADLINE = 1.0
"""Synchronous ByzSGD's bounded delay Δ (seconds) when ``--deadline`` is not given: ample for one
machine or a LAN (a step's messages take milliseconds there); set ``--deadline`` for slower
links."""


@dataclass(frozen=True)
class Fault:
    """Worker ``worker`` (or, with ``role="server"``, ByzSGD server ``worker``) misbehaves with
    ``kind`` at each step in ``steps``."""

    worker: int
    kind: str
    steps: tuple[int, ...]
    role: str = "worker"

    def spec(self) -> str:
        who = f"ps{self.worker}" if self.role == "server" else str(self.worker)
        return f"{who}:{self.kind}@{','.join(map(str, self.steps))}"


def parse_fault(text: str) -> Fault:
    """``"W:KIND@S1,S2"``, e.g. ``"2:nan@1,3"`` (worker 2 sends NaN at steps 1 and 3), or
    ``"psS:KIND@STEPS"`` for a ByzSGD parameter server (kinds ``kill``, ``stop``, ``freeze``), e.g.
    ``"ps2:kill@5"``."""
    role = "worker"
    try:
        who, rest = text.split(":", 1)
        kind, steps = rest.split("@", 1)
        who = who.strip().lower()
        if who.startswith("ps"):
            role, who = "server", who[2:]
        worker = int(who)
        step_list = tuple(int(s) for s in steps.split(",") if s.strip())
    except ValueError:
        raise OptionsError(
            f"--fault {text!r}: expected WORKER:KIND@STEP[,STEP...] (e.g. 2:nan@1,3) or "
            "psSERVER:KIND@STEP[,STEP...] (e.g. ps2:kill@5)"
        ) from None
    kind = kind.strip().lower()
    allowed = SERVER_FAULT_KINDS if role == "server" else FAULT_KINDS
    if kind not in allowed:
        raise OptionsError(f"--fault {text!r}: a {role} fault kind must be one of {', '.join(allowed)}")
    if worker < 0 or not step_list or min(step_list) < 0:
        raise OptionsError(f"--fault {text!r}: worker and steps must be >= 0, with at least one step")
    return Fault(worker, kind, step_list, role)


@dataclass(frozen=True)
class RuntimeOptions:
    """How the distributed run executes.

    ``evict_timeout``: seconds a live worker may take to answer a parameter frame before the server
    evicts it (it must exceed a worker's compute time plus its straggler sleep).
    ``deadline``: with ``wait_all``, the most seconds the server waits for a step's messages before
    going on without the missing ones (None: until every live worker answered or was evicted).
    Synchronous ByzSGD: the bounded message delay Δ the variant assumes (None:
    ``SYNC_DEFAULT_DEADLINE``), see :meth:`sync_delta`.
    ``time_scale``: real seconds slept per simulated second of the straggler model (workers sleep
    ``time_scale * tau_w`` after computing; nothing is slept with ``stragglers.model: none``).
    ``connect_timeout``: rendezvous timeout; ``gloo_timeout``: gloo's own timeout on every pair
    group (a backstop only: eviction is decided by the server, see ``transport``).
    ``device``: worker compute device (``auto``: CUDA if available, else CPU).
    ``progress_every``: the server prints a progress line every that many steps (0: never).
    ``threads``: torch intra-op threads per rank (0: torch's default); one thread per rank keeps
    K + 1 ranks on a few cores from oversubscribing them.
    ``faults``: the fault-injection plan (each worker applies the entries naming it).
    """

    evict_timeout: float = 30.0
    deadline: float | None = None
    time_scale: float = 0.01
    connect_timeout: float = 120.0
    gloo_timeout: float = 1800.0
    device: str = "auto"
    progress_every: int = 10
    threads: int = 1
    faults: tuple[Fault, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("evict_timeout", "connect_timeout", "gloo_timeout"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise OptionsError(f"RuntimeOptions: {name} must be a finite number > 0, got {v!r}")
        if self.deadline is not None and not (math.isfinite(self.deadline) and self.deadline > 0):
            raise OptionsError(f"RuntimeOptions: deadline must be > 0 or None, got {self.deadline!r}")
        if not (math.isfinite(self.time_scale) and self.time_scale >= 0):
            raise OptionsError(f"RuntimeOptions: time_scale must be >= 0, got {self.time_scale!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise OptionsError(f"RuntimeOptions: device must be auto, cpu or cuda[:i], got {self.device!r}")
        if self.threads < 0:
            raise OptionsError(f"RuntimeOptions: threads must be >= 0, got {self.threads}")
        if self.progress_every < 0:
            raise OptionsError(f"RuntimeOptions: progress_every must be >= 0, got {self.progress_every}")

    def faults_of(self, worker: int, role: str = "worker") -> dict[int, str]:
        """``{step: kind}`` for ``worker`` (or ByzSGD server ``worker`` with ``role="server"``;
        the last entry wins on a clash)."""
        plan: dict[int, str] = {}
        for f in self.faults:
            if f.worker == worker and f.role == role:
                for s in f.steps:
                    plan[s] = f.kind
        return plan

    def sync_delta(self) -> float:
        """Synchronous ByzSGD's Δ: ``deadline``, else ``SYNC_DEFAULT_DEADLINE``. A correct node that
        misses it only counts as silent for that step (MDA keeps its ``f``), so a short Δ costs
        messages, never safety; a long one costs time whenever a server is silent."""
        return self.deadline if self.deadline is not None else SYNC_DEFAULT_DEADLINE

    def sync_patience(self) -> float:
        """How long a synchronous ByzSGD party waits for the first ``n - f`` messages of a step:
        the eviction timeout on top of the ``3 Δ`` by which correct parties' steps may drift
        apart (a worker may spend one Δ on a silent server and one on its fallback)."""
        return self.evict_timeout + 3 * self.sync_delta()

    def to_args(self) -> list[str]:
        """The command-line flags that reproduce these options (for the launcher)."""
        args = [
            "--evict-timeout", repr(float(self.evict_timeout)),
            "--time-scale", repr(float(self.time_scale)),
            "--connect-timeout", repr(float(self.connect_timeout)),
            "--gloo-timeout", repr(float(self.gloo_timeout)),
            "--device", self.device,
            "--progress-every", str(self.progress_every),
            "--threads", str(self.threads),
        ]
        if self.deadline is not None:
            args += ["--deadline", repr(float(self.deadline))]
        for f in self.faults:
            args += ["--fault", f.spec()]
        return args
