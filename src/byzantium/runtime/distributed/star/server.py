"""The parameter server (rank 0): the one training loop (:func:`byzantium.runtime.loop.train`)
with a step that collects real messages instead of simulating them.

Per step ``t``:

1. publish the parameters of step ``t`` (latest-only mailbox, :mod:`.transport`);
2. collect replies until the arrival policy is met: ``wait_all`` (every live worker answered,
   or ``deadline`` seconds passed) or ``first_k`` (``k`` valid messages; dSTAR's own ``k``);
   every frame is validated (:func:`.frames.validate_frame`: trailer, stamp, sender, step,
   length, finiteness) before the scheme sees it, and each rejection is counted by reason;
   replies to a step already closed are discarded as ``late``; a worker whose connection fails
   is *dead*, one that leaves a request unanswered for ``evict_timeout`` seconds is *evicted*;
3. ``scheme.server_aggregate`` on the accepted messages (missing ones are stragglers to the
   scheme), then the optimizer step, metrics, evaluation and checkpoints as in the simulator.

If the live workers can no longer give the scheme's guarantee (``scheme.check_live``; e.g. a file
left with fewer than ``r'`` live copies, more dead workers than DRACO's ``s`` minus ``q``, fewer
than dSTAR's ``k``), or a step cannot be aggregated, the server saves a checkpoint of the last
completed step, writes the summary (``completed: false``, ``error``) and raises
:class:`InsufficientWorkersError`; it never waits on a worker that cannot answer.

The run directory is the one ``byzantium train`` writes (config.yaml, metrics.csv, summary.json,
accuracy.png, checkpoints/) plus ``events.jsonl`` (one JSON object per rejection, death,
eviction or deadline). Metrics columns keep their meaning except ``sim_time``: here the real
seconds the server waited for messages (the simulator reports simulated seconds).
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ....config import RunConfig
from ....seeding import generator
from ....training.checkpoint import latest_checkpoint
from ....training.results import MetricsWriter, run_config, write_run_config
from ...job import Job, build_job
from ...loop import Clocks, LineProgress, StopRun, train
from ...records import StarStepperBase, star_summary
from ....stragglers import FirstK
from ...update import ModelUpdate
from .geometry import geometry
from ..frames import MESSAGE, PARAMS, STOP, FrameRejected, encode_frame, from_wire, validate_frame
from ..options import RuntimeOptions
from ..transport import Lost, Reply, ServerTransport, init_world

__all__ = ["InsufficientWorkersError", "run_server", "Collected"]


class InsufficientWorkersError(StopRun):
    """Too few workers remain for the scheme's guarantee (a checkpoint was saved)."""


@dataclasses.dataclass
class Collected:
    """One step's accepted messages: ``messages`` ``(K, *shape)`` (zeros where not received),
    ``received`` ``(K,)`` bool, ``order`` accepted worker ids in arrival order, ``losses`` the
    workers' reported losses, ``wait`` seconds spent collecting. ``messages`` is the server's one
    stack, overwritten by the next step's collect."""

    messages: torch.Tensor
    received: torch.Tensor
    order: list[int]
    losses: list[float]
    wait: float


class _Server:
    def __init__(self, cfg: RunConfig, run_dir: Path, opts: RuntimeOptions, session: int,
                 transport: ServerTransport, job: Job, geo: Any, say: Callable[[str], None]):
        self.cfg, self.run_dir, self.opts, self.session = cfg, run_dir, opts, session
        self.transport, self.job, self.geo, self.say = transport, job, geo, say
        self.scheme = job.scheme
        self.K = cfg.workers
        self.rejections: dict[str, int] = {}
        self.rejections_by_worker: dict[int, dict[str, int]] = {}
        self.gone: dict[int, str] = {}
        self.t_start = time.monotonic()
        self.events_path = run_dir / "events.jsonl"
        self.policy_k = job.policy.k if isinstance(job.policy, FirstK) else None
        self._messages: torch.Tensor | None = None  # the message stack, reused every step

    # ------------------------------------------------------------------ events
    def event(self, step: int, kind: str, worker: int | None = None, reason: str = "",
              detail: str = "", echo: bool = True) -> None:
        rec = {"step": step, "time": round(time.monotonic() - self.t_start, 4), "event": kind,
               "worker": worker, "reason": reason, "detail": detail}
        with self.events_path.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        if echo:
            who = f" worker {worker}" if worker is not None else ""
            self.say(f"event: step {step}:{who} {kind} {reason} {detail}".rstrip())

    def reject(self, step: int, w: int, reason: str, detail: str = "") -> None:
        self.rejections[reason] = self.rejections.get(reason, 0) + 1
        per = self.rejections_by_worker.setdefault(w, {})
        per[reason] = per.get(reason, 0) + 1
        self.event(step, "rejected", w, reason, detail, echo=reason != "late")

    def lose(self, step: int, w: int, kind: str, detail: str) -> None:
        """Mark ``w`` dead/evicted and stop if the scheme's guarantee is gone."""
        if w in self.gone:
            return
        self.transport.evict(w)
        self.gone[w] = kind
        self.event(step, kind, w, detail=detail)
        self.check_guarantee(step)

    def check_guarantee(self, step: int) -> None:
        alive = self.transport.alive()
        for w in torch.nonzero(~alive).flatten().tolist():
            if w not in self.gone:  # its connection failed; the event is still queued
                self.gone[w] = "dead"
                self.event(step, "dead", w, detail="connection lost")
        why = self.scheme.check_live(alive)
        if why is not None:
            raise InsufficientWorkersError(
                f"step {step}: too few workers left for the scheme's guarantee "
                f"(dead/evicted: {dict(sorted(self.gone.items()))}): {why}"
            )

    # ------------------------------------------------------------------ one step's messages
    def collect(self, step: int, params: torch.Tensor) -> Collected:
        geo, K = self.geo, self.K
        frame = encode_frame(PARAMS, step, 0, params, capacity=geo.param_slots, session=self.session)
        t0 = time.monotonic()
        self.transport.publish(step, frame)
        accepted: dict[int, Any] = {}
        order: list[int] = []
        answered: set[int] = set()
        deadline = self.opts.deadline
        while True:
            alive = self.transport.alive()
            pending = [w for w in range(K) if bool(alive[w]) and w not in answered]
            if self.policy_k is not None:
                if len(accepted) >= self.policy_k:
                    break
                if len(accepted) + len(pending) < self.policy_k:
                    raise InsufficientWorkersError(
                        f"step {step}: {len(accepted)} valid message(s) and {len(pending)} live "
                        f"worker(s) still to answer cannot reach first-k k={self.policy_k}"
                    )
            elif not pending:
                break
            now = time.monotonic()
            if deadline is not None and now - t0 >= deadline:
                self.event(step, "deadline", None, detail=f"{len(pending)} worker(s) missing: {pending}",
                           echo=False)
                break
            for w in self.transport.overdue(now, self.opts.evict_timeout,
                                            first_timeout=self.opts.connect_timeout):
                self.lose(step, w, "evicted",
                          f"no answer to step {self.transport.outstanding(w)} within "
                          f"{self.opts.evict_timeout:g} s")
            wait = 0.25 if deadline is None else max(0.0, min(0.25, t0 + deadline - now))
            ev = self.transport.get(wait)
            if ev is None:
                continue
            if isinstance(ev, Lost):
                self.lose(step, ev.worker, "dead", f"{ev.where}: {ev.detail}")
                continue
            assert isinstance(ev, Reply)
            w = ev.worker
            if w in self.gone:
                continue
            if ev.asked is None:
                self.reject(step, w, "unsolicited", "no request outstanding")
                continue
            if ev.asked < step:
                self.reject(step, w, "late", f"reply to step {ev.asked}")
                continue
            answered.add(w)
            try:
                fr = validate_frame(ev.buf, session=self.session, kinds=(MESSAGE,), sender=w + 1,
                                    step=step, length=geo.message_slots, dtype=geo.message_dtype)
            except FrameRejected as e:
                self.reject(step, w, e.reason, e.detail)
                continue
            accepted[w] = fr
            order.append(w)
        wait = time.monotonic() - t0
        if self.policy_k is not None:
            order = order[: self.policy_k]
        # one (K, *message_shape) stack kept across steps (a fresh one page-faults K messages'
        # worth of memory every step: 300 MB for ByzShield K=15, l=5 at d=1e6); it is consumed
        # before the next collect, and rows of workers not counted are zeroed as before
        if self._messages is None:
            self._messages = torch.zeros((K, *geo.message_shape), dtype=geo.message_dtype)
        messages = self._messages
        received = torch.zeros(K, dtype=torch.bool)
        losses = []
        for w in order:
            fr = accepted[w]
            messages[w] = from_wire(fr.payload, geo.message_dtype, geo.message_shape)
            received[w] = True
            if math.isfinite(fr.aux):
                losses.append(fr.aux)
        messages[~received] = 0
        return Collected(messages, received, order, losses, wait)


class StarServerStepper(StarStepperBase):
    """The training loop's step on the parameter server: publish the parameters, collect the
    workers' validated messages, decode and aggregate them with the job's scheme, apply SGD."""

    def __init__(self, srv: _Server, job: Job, update: ModelUpdate, say: Callable[[str], None]):
        self.srv, self.job, self.update, self.say = srv, job, update, say
        # the server's private randomness (DRACO's secret projection): never derived from the
        # run's seed, which every worker knows and could use to predict it
        self.decode_secret = secrets.randbits(62)
        self.reached = 0  # steps completed (the STOP frame's step)

    def step(self, step: int) -> dict[str, Any]:
        job, K = self.job, self.job.workers
        job.model.train()
        col = self.srv.collect(step, self.update.flat())
        try:
            grad, info = job.scheme.server_aggregate(
                col.messages, col.received, step=step,
                generator=generator(self.decode_secret, "decode", step),
                validation=lambda: job.validation_gradient(job.model, step),
                order=torch.tensor(sorted(col.order), dtype=torch.long),
                byzantine=job.byzantine_mask(step),
            )
        except (RuntimeError, ValueError) as e:
            raise InsufficientWorkersError(
                f"step {step}: the scheme cannot aggregate what arrived "
                f"({int(col.received.sum())} of {K} messages): {e}"
            ) from e
        if not torch.isfinite(grad).all():
            raise InsufficientWorkersError(
                f"step {step}: the aggregated gradient of {job.scheme.name} is not finite")
        lr = self.update.apply(grad)
        self.reached = step + 1
        return {
            "step": step, "loss": sum(col.losses) / len(col.losses) if col.losses else None,
            "lr": lr, "message_seconds": col.wait,
            "distorted_files": info.distorted_files, "dropped_files": info.dropped_files,
            "received": info.received, "byzantine_accepted": info.byzantine_accepted,
        }

    def load_state_dict(self, state: dict[str, Any]) -> int:
        start = self.reached = self.update.load_state_dict(state)
        self.say(f"server: resuming at step {start}")
        return start

    def summary(self, rows: list[dict[str, Any]], clocks: Clocks, error: str | None) -> dict[str, Any]:
        srv = self.srv
        return {
            **star_summary(self.job, rows, clocks, completed=error is None),
            "runtime": "distributed",
            "rejections": dict(sorted(srv.rejections.items())),
            "rejections_by_worker": {str(w): v for w, v in sorted(srv.rejections_by_worker.items())},
            "dead_or_evicted": {str(w): k for w, k in sorted(srv.gone.items())},
            "error": error,
        }


def run_server(
    cfg: RunConfig,
    run_dir: Path,
    *,
    world_size: int,
    session: int,
    opts: RuntimeOptions,
    resume: bool = False,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the parameter server (rank 0) of a ``world_size - 1``-worker job; return the summary.

    Raises :class:`InsufficientWorkersError` (after a checkpoint and the summary are written) when
    too few workers remain for the scheme's guarantee.
    """
    K = world_size - 1
    if cfg.workers != K:
        raise ValueError(f"run_server: the config has workers={cfg.workers} but the job has "
                         f"{K} worker ranks (world_size={world_size})")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    groups = init_world(0, world_size, connect_timeout=opts.connect_timeout,
                        gloo_timeout=opts.gloo_timeout)
    say(f"server: {K} workers joined; scheme {cfg.scheme.display}, run directory {run_dir}")
    write_run_config(run_dir, cfg, cfg.scheme)
    job = build_job(cfg)
    geo = geometry(job)
    transport = ServerTransport(groups, message_slots=geo.message_slots)
    srv = _Server(cfg, run_dir, opts, session, transport, job, geo, say)
    if not (resume and latest_checkpoint(run_dir)) and srv.events_path.exists():
        srv.events_path.unlink()
    stepper = StarServerStepper(srv, job, ModelUpdate(job.model, cfg, job.dataset), say)
    t = cfg.training

    def on_stop(step: int, error: str, path: Path | None) -> None:
        srv.event(step, "stopped", None, detail=f"{error}; checkpoint {path}")

    try:
        summary, rows = train(
            stepper, run_dir=run_dir, steps=t.steps, eval_every=t.eval_every,
            checkpoint_every=t.checkpoint_every, metrics=MetricsWriter(run_dir / "metrics.csv"),
            resume=resume,
            progress=lambda start: LineProgress(say, t.steps, start, opts.progress_every, K),
            plot=(cfg.scheme.display, f"{cfg.name}: {cfg.scheme.display} (distributed)"),
            on_stop=on_stop, config=run_config(cfg, cfg.scheme),
        )
    except StopRun as e:
        raise InsufficientWorkersError(str(e)) from None
    finally:
        step = stepper.reached
        transport.stop(encode_frame(STOP, step, 0, torch.zeros(0), capacity=geo.param_slots,
                                    session=session), step)
        transport.wait_stopped(min(5.0, opts.evict_timeout))
    say(f"server: done, {len(rows)} steps; results in {run_dir}")
    summary["model"] = job.model
    return summary
