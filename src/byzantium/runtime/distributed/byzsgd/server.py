r"""A ByzSGD parameter server rank (server ``s`` = rank ``s``), correct or Byzantine.

Per step ``t`` (dstar_byzsgd.md §2.3; synchronous variant §2.7), on real messages:

1. **S1 (pull).** Send :math:`\theta_s^t` to the workers that pull from this server at ``t``: all of
   them (asynchronous variant; synchronous gather steps ``t mod T = 0`` and step 0), or only
   worker ``j`` with ``(j + t) mod n_ps = s`` (synchronous normal steps). A synchronous worker
   whose filters reject its model sends a REQUEST; the server answers with its model of ``t``
   while it is still collecting step ``t``'s gradients.
2. **S2-S4.** Collect the first ``q_w`` valid gradients tagged ``t`` (synchronous: at least
   ``n_w - f_w``, then everyone's until three deadlines Δ later, since a worker may spend one Δ
   on a silent server and one on its fallback; MDA keeps ``f_w`` while the count allows it:
   a correct worker can miss a real deadline, so silence does not lower ``f`` as in the
   simulator), stacked in worker order; :math:`G = \mathrm{MDA}_{f_w}`; the SGD step
   (:func:`server_update`, per-server momentum if configured).
3. **S5 (gather, DMC)** when ``(t + 1) mod T = 0``: send the model to every other server and take
   the CwMed of its own and the first ``q_ps - 1`` models received for ``t``.

**A server that fell behind** (its process froze or starved while the workers went on with the
other servers' models; the workers' latest-only outboxes then kept only their newest gradient for
it) never gets the gradients of its step. Step 2 waits instead for the newest step ``t' >= t``
that a quorum of workers reached and applies their gradients there (``skipped`` event,
``steps_skipped`` in the summary); the next gather pulls its model back to the others'.

**A Byzantine server** (the last ``f_ps`` when ``byzsgd.server_attack`` is set) runs the same
computation to hold the model it would have if correct (the attack's ``reference``), and sends
what the server attack makes of it, one row per recipient: here it knows only what it received
(its ``correct`` are the other servers' models of its last gather, or its own model before the
first), not the simulator's omniscient view; ``filter_hug`` has no access to the workers' filter
state and sends the reference. ``silent`` sends nothing.

Each server writes ``servers/ps<s>/`` in the run directory: ``metrics.csv`` (per step: loss, lr,
wall time, the seconds it waited, gradients counted, test accuracy at eval steps),
``snapshots.pt`` (its model at every eval step, for the drift between servers), ``summary.json``
(frames sent by kind, rejections, lost peers, error) and ``events.jsonl``.
"""

from __future__ import annotations

import math
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

import torch

from ....attacks import ServerAttackContext
from ....byzsgd import dmc_gather, server_aggregate, server_update
from ....seeding import generator
from ....training.models import evaluate
from ....training.pergrad import set_flat_params
from ....training.results import MetricsWriter
from ...loop import Clocks, LineProgress, StopRun, train
from ..faults import process_fault
from ..frames import GATHER, MESSAGE, PARAMS, REQUEST, encode_frame
from ..mesh import Mesh, open_mesh
from ..options import RuntimeOptions
from .checkpoint import load_server_state, save_server_state
from .inbox import EventLog, Inbox, QuorumError, Received
from .layout import Layout, build_deployment, feasible_f, pairs

__all__ = ["run_byzsgd_server", "SERVER_FIELDS"]

SERVER_FIELDS = ("step", "loss", "lr", "wall_time", "wait_time", "received", "gathered",
                 "test_loss", "test_accuracy")

KIND_NAMES = {PARAMS: "pull", MESSAGE: "push", GATHER: "gather", REQUEST: "request"}


class _Server:
    def __init__(self, s: int, cfg: Any, cluster: Any, dataset: Any, mesh: Mesh, window: int,
                 opts: RuntimeOptions, session: int, out: Path, say: Callable[[str], None],
                 resumed: bool = False) -> None:
        self.s, self.cfg, self.cluster, self.dataset, self.mesh = s, cfg, cluster, dataset, mesh
        self.opts, self.session, self.out, self.say = opts, session, out, say
        p = cluster.params
        self.p = p
        self.layout = Layout(p.n_ps, p.n_w)
        self.byzantine = s in cluster.byz_ps
        self.theta = cluster.models[s].clone()
        self.buf: torch.Tensor | None = None
        self.correct_seen = self.theta[None].clone()
        self.history: deque[torch.Tensor] = deque(maxlen=100)
        self.t = 0
        self.start = 0  # the first step of this process (> 0 after a resume)
        self.answering: int | None = None  # sync: the step whose REQUESTs get this model
        self.skipped = 0  # steps this server jumped over because it fell behind
        self.steps_run = self.gathers_run = 0
        # sync: the bounded delay Δ (--deadline, else the default) and the wait for n - f messages
        self.delta, self.patience = opts.sync_delta(), opts.sync_patience()
        self.events = EventLog(out / "events.jsonl", f"server {s}", say, fresh=not resumed)
        self.inbox = Inbox(mesh, session=session, slots=cluster.d, kinds_from=self._kinds_from,
                           window=window, events=self.events, on_frame=self._on_frame)

    # ------------------------------------------------------------------ wiring
    def _kinds_from(self, peer: int) -> tuple[int, ...]:
        return (GATHER,) if peer < self.p.n_ps else (MESSAGE, REQUEST)

    def _on_frame(self, kind: int, step: int, peer: int, rec: Received) -> None:
        if kind == REQUEST and step == self.answering:
            self.send_models(step, PARAMS, [peer])  # a synchronous worker's fallback pull

    def frame(self, kind: int, step: int, payload: torch.Tensor) -> torch.Tensor:
        return encode_frame(kind, step, self.s, payload.to(torch.float32).contiguous(),
                            capacity=self.cluster.d, session=self.session)

    def send_models(self, t: int, kind: int, recipients: list[int]) -> None:
        """Send this server's model of step ``t`` to ``recipients`` (ranks); a Byzantine server
        sends the attack's row for each recipient, or nothing."""
        if not recipients:
            return
        if not self.byzantine:
            fr = self.frame(kind, t, self.theta)
            for r in recipients:
                self.mesh.send(r, fr)
            return
        label = "pull" if kind == PARAMS else "gather"
        ctx = ServerAttackContext(
            step=t, kind=label, correct=self.correct_seen, reference=self.theta, recipients=len(recipients),
            generator=generator(self.cfg.seed, f"byzsgd.server_attack.{self.s}.{label}", t),
            history=tuple(self.history))
        rows = self.cluster.server_attack(ctx)
        if rows is None:
            return
        for i, r in enumerate(recipients):
            self.mesh.send(r, self.frame(kind, t, rows[i]))

    # ------------------------------------------------------------------ one step
    def pull_recipients(self, t: int) -> list[int]:
        p, T = self.p, self.cluster.T
        if p.variant == "async" or t % T == 0 or t == self.start:
            return self.layout.workers
        return [self.layout.worker_rank(j) for j in range(p.n_w) if (j + t) % p.n_ps == self.s]

    def _floor(self, t: int) -> None:
        """Gradients and fallback requests of steps before ``t`` are no longer wanted."""
        self.inbox.set_floor(MESSAGE, t)
        self.inbox.set_floor(REQUEST, t)

    def step(self, t: int) -> dict[str, Any]:
        """Run step ``t``, or a later one if the workers went on without this server (it fell
        behind: :meth:`Inbox.collect_newest`); the returned row's ``step`` says which."""
        p, cl = self.p, self.cluster
        self.t = t
        if self.byzantine:  # only the stale-replay behaviour reads it
            self.history.append(self.theta.clone())
        self._floor(t)
        self.send_models(t, PARAMS, self.pull_recipients(t))
        sync = p.variant == "sync"
        if sync:  # answer fallback REQUESTs for t (also those that came early) until the update
            self.answering = t
            self.send_models(t, PARAMS, list(self.inbox.have(REQUEST, t)))
        tw = time.monotonic()
        first = (self.opts.connect_timeout if t == self.start
                 else self.patience if sync else self.opts.evict_timeout)
        if sync:
            # everyone's gradient, until 3 deadlines after the first (a worker may take 2 to push:
            # a timed-out pull, then a fallback pull); the first may take the start-up time
            at, got = self.inbox.collect_sync(MESSAGE, t, self.layout.workers, p.f_w, first_timeout=first,
                                              rest=3 * self.delta, what="gradients", newest=True)
        else:
            at, got = self.inbox.collect_newest(MESSAGE, t, p.quorum_w, self.layout.workers, timeout=first,
                                                what="gradients")
        waited = time.monotonic() - tw
        self.answering = None
        if at > t:  # behind: the workers' gradients of step ``at`` update this server's model
            self.events.write(t, "skipped", None, detail=f"behind: jumps from step {t} to {at}", echo=False)
            self.skipped += at - t
            t = self.t = at
            self._floor(t)
        lr = float(cl.lr_fn(t))
        if sync and len(got) < p.n_w:
            self.events.write(t, "deadline", None, detail=f"{p.n_w - len(got)} gradient(s) missing",
                              echo=False)
        senders = sorted(got)
        G = torch.stack([got[w].payload for w in senders])
        f = p.f_w if not sync else feasible_f(p.f_w, len(got))
        agg = server_aggregate(G, f, cl.server_rule)
        self.theta, self.buf = server_update(self.theta, self.buf, agg, lr, momentum=self.cfg.optim.momentum,
                                             weight_decay=self.cfg.optim.weight_decay)
        losses = [got[w].aux for w in senders if math.isfinite(got[w].aux)]
        gathered = bool(cl.dmc and (t + 1) % cl.T == 0)
        if gathered:
            waited += self.gather(t)
            self.gathers_run += 1
        self.steps_run += 1
        return {"step": t, "lr": lr, "loss": sum(losses) / len(losses) if losses else None,
                "received": len(got), "gathered": int(gathered), "wait_time": waited}

    def gather(self, t: int) -> float:
        """DMC at step ``t``; returns the seconds spent waiting for the other servers."""
        p, cl = self.p, self.cluster
        others = [o for o in self.layout.servers if o != self.s]
        self.inbox.set_floor(GATHER, t)
        self.send_models(t, GATHER, others)
        sync = p.variant == "sync"
        q = p.quorum_ps - 1
        tw = time.monotonic()
        if sync:  # the servers' steps end up to 3 deadlines apart (their gradient waits)
            got = self.inbox.collect_sync(GATHER, t, others, p.f_ps, first_timeout=self.patience,
                                          rest=3 * self.delta, what="gather models")[1]
        else:
            got = self.inbox.collect(GATHER, t, q, others, timeout=self.opts.evict_timeout,
                                     what="gather models")
        waited = time.monotonic() - tw
        received = (torch.stack([got[o].payload for o in sorted(got)]) if got
                    else self.theta.new_empty((0, cl.d)))
        if received.shape[0]:
            self.correct_seen = received.clone()
        f = p.f_ps if not sync else feasible_f(p.f_ps, len(got) + 1)
        if cl.model_rule == "mean":
            self.theta = torch.cat([self.theta[None], received]).mean(dim=0)
        else:
            self.theta = dmc_gather(self.theta, received, f)
        self.inbox.set_floor(GATHER, t + 1)
        return waited


class ServerCheckpoints:
    """Server ``rank``'s checkpoints under ``servers/ps<rank>/`` (:mod:`.checkpoint`); resume
    is by step (the newest step a quorum of servers has), so the caller restores them itself."""

    def __init__(self, run_dir: Path, rank: int) -> None:
        self.run_dir, self.rank = Path(run_dir), rank

    def save(self, step: int, state: dict[str, Any]) -> Path:
        return save_server_state(self.run_dir, self.rank, step, state)

    def newest(self) -> None:
        return None


class ByzSGDServerStepper:
    """The training loop's step on a ByzSGD server rank: :meth:`_Server.step` (gradients from a
    quorum of workers, MDA, SGD, the gather every T steps); evaluation of its own model, kept as
    a snapshot for the merged drift."""

    def __init__(self, srv: _Server, cluster: Any, dataset: Any, out: Path, steps: int,
                 snapshots: tuple[list[int], list[torch.Tensor]]) -> None:
        self.srv, self.cluster, self.dataset, self.out, self.steps = srv, cluster, dataset, out, steps
        self.snap_steps, self.snapshots = snapshots
        self.t = srv.start  # the step being run (after a catch-up jump: the step joined)
        self.reached = srv.start  # steps completed

    def step(self, t: int) -> dict[str, Any]:
        self.srv.inbox.echo_lost = t + 1 < self.steps
        row = self.srv.step(t)
        self.t = row["step"]
        self.reached = self.t + 1
        return row

    def evaluate(self) -> dict[str, Any]:
        set_flat_params(self.cluster.template, self.srv.theta)
        ev = evaluate(self.cluster.template, self.dataset,
                      batch_size=self.srv.cfg.training.eval_batch_size)
        self.snapshots.append(self.srv.theta.clone())
        self.snap_steps.append(self.t)
        torch.save({"steps": self.snap_steps, "models": torch.stack(self.snapshots)},
                   self.out / "snapshots.pt")
        return {"test_loss": ev.get("loss"), "test_accuracy": ev.get("accuracy")}

    def state_dict(self) -> dict[str, Any]:
        srv = self.srv
        return {"theta": srv.theta, "buf": srv.buf, "correct_seen": srv.correct_seen,
                "history": list(srv.history)}

    def load_state_dict(self, state: dict[str, Any]) -> int:
        raise RuntimeError("a ByzSGD server resumes by step (load_server_state), not here")

    def summary(self, rows: list[dict[str, Any]], clocks: Clocks, error: str | None) -> dict[str, Any]:
        srv, mesh = self.srv, self.srv.mesh
        mesh.flush(min(10.0, srv.opts.evict_timeout))  # count what the outboxes still held
        sent = {KIND_NAMES.get(k, str(k)): v for k, v in sorted(mesh.sent_by_kind().items())}
        return {
            "server": srv.s, "byzantine": srv.byzantine, "first_step": srv.start,
            "steps_completed": self.reached, "completed": error is None,
            "steps_run": srv.steps_run, "steps_skipped": srv.skipped, "gathers_run": srv.gathers_run,
            "error": error, "frames_sent": sent, "frames_replaced": mesh.replaced,
            "frames_undelivered": mesh.undelivered,
            "rejections": dict(sorted(srv.inbox.rejections.items())),
            "lost": {str(k): v for k, v in sorted(srv.inbox.lost.items())},
            "gather_period": self.cluster.T,
        }


def run_byzsgd_server(
    cfg: Any,
    run_dir: Path,
    *,
    rank: int,
    world_size: int,
    session: int,
    opts: RuntimeOptions,
    resume_step: int | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Serve as ByzSGD server ``rank`` until the last step (or a :class:`QuorumError`); write
    ``servers/ps<rank>/`` and return the server's summary.

    ``resume_step`` ``R > 0``: continue at step ``R`` from this server's checkpoint there (or its
    newest one before, see :mod:`.checkpoint`); metrics and snapshots are cut back to ``R``."""
    b = cfg.byzsgd
    layout = Layout(b.n_ps, cfg.workers)
    if world_size != layout.world:
        raise ValueError(f"byzsgd serve: n_ps={b.n_ps} servers + workers={cfg.workers} need "
                         f"WORLD_SIZE={layout.world}, got {world_size}")
    if not 0 <= rank < b.n_ps:
        raise ValueError(f"byzsgd serve: a server's rank must lie in [0, n_ps={b.n_ps}), got {rank}")
    out = Path(run_dir) / "servers" / f"ps{rank}"
    out.mkdir(parents=True, exist_ok=True)
    dataset, cluster = build_deployment(cfg)  # before joining: the others wait in the barrier
    mesh = open_mesh(rank, world_size, pairs(layout), slots=cluster.d, connect_timeout=opts.connect_timeout,
                     gloo_timeout=opts.gloo_timeout)
    if rank == 0:
        say(f"server 0: {b.n_ps} servers and {cfg.workers} workers joined; ByzSGD {b.variant}, "
            f"run directory {run_dir}")
    srv = _Server(rank, cfg, cluster, dataset, mesh, max(64, 4 * cluster.T), opts, session, out, say,
                  resumed=bool(resume_step))
    faults = opts.faults_of(rank, role="server")
    steps = cfg.training.steps
    snapshots: list[torch.Tensor] = []
    snap_steps: list[int] = []
    wall = 0.0
    start = resume_step or 0
    if start:
        state = load_server_state(run_dir, rank, start)
        if state is not None:
            srv.theta, srv.buf = state["theta"], state["buf"]
            srv.correct_seen = state["correct_seen"]
            wall = float(state.get("wall_time", state.get("wall", 0.0)))
            srv.history.extend(state["history"])
        say(f"server {rank}: resuming at step {start} from "
            + (f"its checkpoint of step {state['step']}" if state is not None else "the initial model")
            + (" (a lagging server until the next gather)" if state is None or state["step"] != start else ""))
        if (out / "snapshots.pt").exists():
            sn = torch.load(out / "snapshots.pt", weights_only=True)
            keep = [i for i, st in enumerate(sn["steps"]) if st < start]
            snap_steps, snapshots = [sn["steps"][i] for i in keep], [sn["models"][i] for i in keep]
    srv.start = start
    stepper = ByzSGDServerStepper(srv, cluster, dataset, out, steps, (snap_steps, snapshots))

    def before_step(t: int) -> None:
        for at in sorted(st for st in faults if st <= t):  # also those of steps jumped over
            process_fault(faults.pop(at), f"server {rank}", at, say)

    def on_stop(t: int, error: str, path: Path | None) -> None:
        srv.events.write(t, "stopped", None, detail=error)

    try:
        summary, _ = train(
            stepper, run_dir=Path(run_dir), steps=steps, eval_every=cfg.training.eval_every,
            checkpoint_every=cfg.training.checkpoint_every,
            metrics=MetricsWriter(out / "metrics.csv", SERVER_FIELDS),
            checkpoints=ServerCheckpoints(run_dir, rank), start=start, clocks=Clocks(wall_time=wall),
            checkpoint_at_end=False, checkpoint_on_stop=False, before_step=before_step,
            progress=lambda first: LineProgress(say, steps, first,
                                                opts.progress_every if rank == 0 else 0, cfg.workers),
            on_stop=on_stop, summary_path=out / "summary.json",
        )
    except StopRun as e:
        raise QuorumError(str(e)) from None
    finally:
        mesh.flush(min(10.0, opts.evict_timeout))
        mesh.close()
    return summary
