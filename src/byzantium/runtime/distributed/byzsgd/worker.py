r"""A ByzSGD worker rank (worker ``j`` = rank ``n_ps + j``), correct or Byzantine.

Per step (dstar_byzsgd.md §2.3, §2.7):

* **Asynchronous (W1-W4).** Wait for the first ``q_ps`` valid models of one step from the
  servers; take the newest step ``t`` for which that many arrived (a worker that fell behind
  skips to the servers' current step instead of sending gradients nobody counts any more);
  :math:`\tilde\theta = \mathrm{CwMed}` of them (in server order); compute the gradient of file
  ``j`` of step ``t``; send it to every server.
* **Synchronous.** Step 0 and gather steps (``t mod T = 0``) pull from every server (all ``n_ps``
  until ``deadline`` = the bounded delay Δ; the silent ones are faulty for the step). Normal steps take the model of
  server ``(j + t) mod n_ps`` only, compute the gradient and run the Lipschitz and outliers
  filters (:mod:`byzantium.byzsgd.protocol`); a rejected or missing model triggers the fallback:
  a REQUEST to the other servers, the CwMed of every model received and a recomputed gradient.
  A worker that finds models of a later step (the servers went on without it) joins that step
  with a full pull.

**A Byzantine worker** (the last ``f_w`` when the run's attack is set) runs the attack in its own
process. It is omniscient about the data: it computes every worker's gradient of the step at its
own combined model (the honest ones are what ALIE/IPM/... read, its own row is ``own``) and sends
each server the attack's row for that server (generator ``byzsgd.worker_attack.<s>``, as the
simulator), so it may equivocate. Colluding Byzantine workers agree exactly when their combined
models coincide.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ....attacks import AttackContext
from ....byzsgd import (
    combine_models,
    lipschitz_accept,
    lipschitz_coefficient,
    outliers_accept,
    outliers_bound,
    predicted_model,
    push_history,
    server_aggregate,
)
from ....seeding import generator
from ....training.pergrad import per_file_gradients, set_flat_params
from ..faults import FAULTS, faulty_frame, process_fault
from ..frames import MESSAGE, PARAMS, REQUEST, encode_frame
from ..mesh import Mesh, open_mesh
from ..options import RuntimeOptions
from .inbox import EventLog, Inbox, QuorumError, Received
from .layout import Layout, build_deployment, feasible_f, pairs

__all__ = ["run_byzsgd_worker"]

KIND_NAMES = {PARAMS: "pull", MESSAGE: "push", REQUEST: "request"}


class _Worker:
    def __init__(self, j: int, rank: int, cfg: Any, cluster: Any, mesh: Mesh, opts: RuntimeOptions,
                 session: int, events: EventLog) -> None:
        self.j, self.rank, self.cfg, self.cluster, self.mesh = j, rank, cfg, cluster, mesh
        self.opts, self.session, self.events = opts, session, events
        self.p = cluster.params
        self.layout = Layout(self.p.n_ps, self.p.n_w)
        self.byzantine = j in cluster.byz_w
        self.inbox = Inbox(mesh, session=session, slots=cluster.d,
                           kinds_from=lambda peer: (PARAMS,) if peer < self.p.n_ps else (),
                           window=10**9, events=events, per_sender=max(64, 4 * cluster.T))
        self.pushed_at = 0.0  # when this worker last pushed (sync: the src model's wait)
        self.theta_prev: torch.Tensor | None = None
        self.grad_prev: torch.Tensor | None = None
        self.lip_history: list[float] = []
        self.filter = {"accepted": 0, "rejected": 0, "rejected_lipschitz": 0, "rejected_outliers": 0,
                       "timeouts": 0, "fallbacks": 0, "skipped_steps": 0}

    # ------------------------------------------------------------------ pulls
    def _combine(self, got: dict[int, Received]) -> torch.Tensor:
        p = self.p
        stack = torch.stack([got[s].payload for s in sorted(got)])
        if self.cluster.model_rule == "mean":
            return stack.mean(dim=0)
        f = p.f_ps if p.variant == "async" else feasible_f(p.f_ps, len(got))
        return combine_models(stack, f)

    def _timeout(self, first: bool) -> float:
        """How long the first message of a step may take (the start-up for the first step; the
        synchronous variant adds the 3 Δ its parties may drift apart)."""
        if first:
            return self.opts.connect_timeout
        return self.opts.sync_patience() if self.p.variant == "sync" else self.opts.evict_timeout

    @property
    def delta(self) -> float:
        """The synchronous variant's bounded delay Δ: ``--deadline``, else the default."""
        return self.opts.sync_delta()

    def newest_quorum(self, start: int, first: bool) -> tuple[int, dict[int, Received]]:
        """Asynchronous pull: the newest step ``>= start`` with ``q_ps`` models, and those."""
        return self.inbox.collect_newest(PARAMS, start, self.p.quorum_ps, self.layout.servers,
                                         timeout=self._timeout(first), what="models")

    def full_pull_sync(self, t: int, first: bool, request: bool) -> dict[int, Received]:
        """Synchronous full pull of step ``t``: every server's model until the deadline (the
        first one may take the start-up time); ``request``: the servers do not broadcast at ``t``,
        so ask those whose model is missing (a fallback, or a worker that fell behind)."""
        servers = self.layout.servers
        if request:
            have = self.inbox.have(PARAMS, t)
            req = encode_frame(REQUEST, t, self.rank, torch.zeros(0), capacity=self.cluster.d,
                               session=self.session)
            for s in servers:
                if s not in have:
                    self.mesh.send(s, req)
        # n_ps - f_ps models come when the servers reach t (start-up, a gather, slow workers
        # may delay that), the rest within one deadline
        return self.inbox.collect_sync(PARAMS, t, servers, self.p.f_ps, first_timeout=self._timeout(first),
                                       rest=self.delta, what="models")[1]

    # ------------------------------------------------------------------ gradients
    def gradients(self, theta: torch.Tensor, t: int) -> tuple[torch.Tensor, float]:
        """This worker's gradient (correct), or every worker's (Byzantine: the attack's input)."""
        cl = self.cluster
        x, y = cl.files(t)
        set_flat_params(cl.template, theta)
        if self.byzantine:
            G, loss = per_file_gradients(cl.template, cl.loss_fn, x, y, return_loss=True)
            return G, float("nan")
        G, loss = per_file_gradients(cl.template, cl.loss_fn, x[self.j:self.j + 1], y[self.j:self.j + 1],
                                     return_loss=True)
        return G[0], float(loss)

    def messages(self, grads: torch.Tensor, t: int) -> list[torch.Tensor]:
        """One gradient per server (index = server rank)."""
        p, cl = self.p, self.cluster
        if not self.byzantine:
            return [grads] * p.n_ps
        honest, own = grads[cl.correct_w], grads[cl.byz_w]
        mine = cl.byz_w.index(self.j)
        out = []
        for s in range(p.n_ps):
            ctx = AttackContext(
                honest=honest, n=min(p.quorum_w, p.n_w), num_byzantine=len(cl.byz_w), own=own,
                rule=lambda G: server_aggregate(G, p.f_w, cl.server_rule),
                generator=generator(self.cfg.seed, f"byzsgd.worker_attack.{s}", t))
            out.append(cl.worker_attack(ctx)[mine])
        return out

    def servers_step(self, t: int) -> int:
        """The newest step that ``f_ps + 1`` servers (so at least one correct one) have sent a
        model for, or ``t``: a Byzantine server announcing a far future step moves nobody."""
        latest: dict[int, int] = {}
        for (k, st), got in self.inbox.store.items():
            if k == PARAMS:
                for s in got:
                    latest[s] = max(latest.get(s, st), st)
        ranked = sorted(latest.values(), reverse=True)
        f = self.p.f_ps
        return max(t, ranked[f]) if len(ranked) > f else t

    # ------------------------------------------------------------------ one step
    def step(self, t: int, first: bool) -> tuple[int, list[torch.Tensor], float]:
        """Pull, compute; returns ``(step, per-server messages, loss)``."""
        p, cl = self.p, self.cluster
        sync = p.variant == "sync"
        if not sync:
            t0 = t
            t, got = self.newest_quorum(t, first)
            if t > t0:  # the servers went on without this worker (it froze, or starved)
                self.events.write(t0, "skipped", None, detail=f"behind: jumps from step {t0} to {t}",
                                  echo=False)
                self.filter["skipped_steps"] += t - t0
            theta = self._combine(got)
            grads, loss = self.gradients(theta, t)
            return t, self.messages(grads, t), loss
        newest = self.servers_step(t)
        if newest > t:  # the servers moved on without this worker: join their step
            self.events.write(t, "skipped", None, detail=f"behind: jumps from step {t} to {newest}",
                              echo=False)
            self.filter["skipped_steps"] += newest - t
            t, self.theta_prev = newest, None
        broadcast = t % cl.T == 0 or first
        if broadcast or self.theta_prev is None:
            theta = self._combine(self.full_pull_sync(t, first, request=not broadcast))
            grads, loss = self.gradients(theta, t)
        else:
            theta, grads, loss = self.sync_normal(t)
        mine = grads if not self.byzantine else grads[self.j]
        self.theta_prev, self.grad_prev = theta, mine
        return t, self.messages(grads, t), loss

    def sync_normal(self, t: int) -> tuple[torch.Tensor, torch.Tensor, float]:
        p, cl, j = self.p, self.cluster, self.j
        assert self.theta_prev is not None and self.grad_prev is not None
        lr, since = float(cl.lr_fn(t)), t % cl.T
        src = (j + t) % p.n_ps
        # the server sends once every worker pushed step t-1: the slowest push comes at most
        # two deadlines (a timed-out pull and a fallback) after this worker's
        wait = max(self.delta, 3 * self.delta - (time.monotonic() - self.pushed_at))
        got = self.inbox.collect(PARAMS, t, 1, [src], timeout=wait, what="model", strict=False)
        ok = False
        if got:
            theta = got[src].payload
            grads, loss = self.gradients(theta, t)
            g = grads if not self.byzantine else grads[j]
            k = lipschitz_coefficient(theta, self.theta_prev, g, self.grad_prev)
            lip_ok = lipschitz_accept(k, self.lip_history, p.n_ps, p.f_ps)
            pred = predicted_model(self.theta_prev, self.grad_prev, lr)
            gref = self.grad_prev if p.outliers_norm == "previous" else g
            bound = outliers_bound(lr, float(gref.norm()), cl.T, p.n_w, p.f_w, since)
            out_ok = outliers_accept(theta, pred, bound)
            push_history(self.lip_history, k)
            ok = lip_ok and out_ok
            self.filter["rejected_lipschitz"] += int(not lip_ok)
            self.filter["rejected_outliers"] += int(not out_ok)
        else:
            self.filter["timeouts"] += 1
        if ok:
            self.filter["accepted"] += 1
            return theta, grads, loss
        self.filter["rejected"] += int(bool(got))
        self.filter["fallbacks"] += 1
        theta = self._combine(self.full_pull_sync(t, False, request=True))
        grads, loss = self.gradients(theta, t)
        return theta, grads, loss


def run_byzsgd_worker(
    cfg: Any,
    *,
    rank: int,
    world_size: int,
    session: int,
    opts: RuntimeOptions,
    run_dir: Path | None = None,
    start_step: int = 0,
    say: Callable[[str], None] | None = None,
) -> int:
    """Serve as ByzSGD worker ``rank - n_ps`` from ``start_step`` (a resumed run's step) until the
    last step (0) or until the servers cannot give a quorum (1). With ``run_dir``, write
    ``workers/w<j>.json`` (frames sent, filters)."""
    say = say or (lambda m: print(m, file=sys.stderr, flush=True))
    b = cfg.byzsgd
    layout = Layout(b.n_ps, cfg.workers)
    if world_size != layout.world:
        raise ValueError(f"byzsgd work: n_ps={b.n_ps} servers + workers={cfg.workers} need "
                         f"WORLD_SIZE={layout.world}, got {world_size}")
    if not b.n_ps <= rank < layout.world:
        raise ValueError(f"byzsgd work: a worker's rank must lie in [n_ps={b.n_ps}, {layout.world}), got {rank}")
    j = layout.worker_index(rank)
    faults = opts.faults_of(j)
    if any(FAULTS[k].truncate for k in faults.values()):
        raise ValueError("byzsgd work: fault 'short' is not supported by the ByzSGD runtime (its mesh only "
                         "sends whole frames); the other frame faults are")
    dataset, cluster = build_deployment(cfg)  # before joining: the others wait in the barrier
    mesh = open_mesh(rank, world_size, pairs(layout), slots=cluster.d, connect_timeout=opts.connect_timeout,
                     gloo_timeout=opts.gloo_timeout)
    events = EventLog(None if run_dir is None else Path(run_dir) / "workers" / f"w{j}.events.jsonl",
                      f"worker {j}", say, fresh=start_step == 0)
    wk = _Worker(j, rank, cfg, cluster, mesh, opts, session, events)
    say(f"worker {j}: rank {rank}/{world_size}, byzantine {wk.byzantine}, variant {b.variant}")
    steps = cfg.training.steps
    t, done, rc, error = start_step, 0, 0, None
    try:
        while t < steps:
            fault = faults.get(t)
            process_fault(fault, f"worker {j}", t, say)
            t, msgs, loss = wk.step(t, first=done == 0)
            fault = faults.get(t)
            for s, m in enumerate(msgs):
                fr = faulty_frame(fault, m.to(torch.float32), step=t, rank=rank, slots=cluster.d,
                                  session=session, aux=loss)
                mesh.send(s, fr)
            wk.pushed_at = time.monotonic()
            wk.inbox.set_floor(PARAMS, t + 1)
            done += 1
            t += 1
    except QuorumError as e:
        error, rc = str(e), 1
        say(f"worker {j}: {e}")
    finally:
        mesh.flush(min(10.0, opts.evict_timeout))
        mesh.close()
    if run_dir is not None:
        out = Path(run_dir) / "workers"
        out.mkdir(parents=True, exist_ok=True)
        sent = {KIND_NAMES.get(k, str(k)): v for k, v in sorted(mesh.sent_by_kind().items())}
        (out / f"w{j}.json").write_text(json.dumps({
            "worker": j, "byzantine": wk.byzantine, "first_step": start_step, "steps_computed": done, "last_step": t - 1,
            "frames_sent": sent, "frames_replaced": mesh.replaced, "frames_undelivered": mesh.undelivered, "filter": wk.filter,
            "rejections": dict(sorted(wk.inbox.rejections.items())),
            "lost": {str(k): v for k, v in sorted(wk.inbox.lost.items())}, "error": error,
        }, indent=2))
    say(f"worker {j}: finished after {done} computed step(s), last step {t - 1}")
    return rc
