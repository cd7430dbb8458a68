r"""The ByzSGD simulator: ``n_ps`` replicated servers and ``n_w`` workers stepped in lock-step.

One step ``t`` (dstar_byzsgd.md §2.3; synchronous variant §2.7):

1. **Pull.** Async, or a sync step with ``t mod T == 0``: each worker receives a model from every
   server that replies (Byzantine servers send one model per recipient, or nothing), the arrival
   scheduler picks the ``q_ps`` it counts, and it takes their CwMed. Sync normal step: worker
   ``j`` pulls from server ``(j + t) mod n_ps`` only, computes its gradient there and runs the
   Lipschitz and outliers filters; a rejected (or missing) model triggers the fallback, a full
   pull as above and a recomputed gradient.
2. **Gradients.** Each worker's gradient on its file of ``b`` examples at its model. Workers with
   identical models share one vectorised pass (:func:`per_file_gradients`).
3. **Push.** Every worker sends to every server; Byzantine workers send what the worker attack
   (:mod:`byzantium.attacks`) makes for *that* server. Each correct server counts ``q_w``
   gradients (scheduler), aggregates them with ``MDA_{f_w}`` and takes an SGD step
   (:func:`~.protocol.server_update`): plain SGD by default, the paper's faithful mode; with
   ``momentum`` / ``weight_decay`` as ``torch.optim.SGD``, each server keeping its own momentum
   buffer (spec P12).
4. **Gather** when ``(t + 1) mod T == 0``: each correct server takes the CwMed of ``q_ps``
   models, its own included (DMC).

Conventions [I]: the *last* ``f_ps`` servers and the *last* ``f_w`` workers are Byzantine (when
an attack is set); a Byzantine server's "own" model is the mean of the correct servers' models;
Byzantine workers compute an honest gradient (their ``own``) like correct ones. Sync variant:
silent nodes are known faulty after the timeout, so a median over ``m`` received models uses
``f = max(0, f - (n - m))``. All randomness comes from ``seeding.generator(seed, stream, t)``.

Momentum (P12, a documented deviation): DMC takes the median of the *parameters* only; the
momentum buffers stay per server and are not contracted (the paper's servers run plain SGD and
have no optimizer state). The sync variant's outliers filter predicts a plain SGD step
(``theta_prev - lr * g_prev``); with momentum honest servers move further than it predicts, which
can only cause fallbacks (messages), never accept a Byzantine model more easily.

State: :meth:`ByzSGDCluster.state_dict` / :meth:`~ByzSGDCluster.load_state_dict` hold everything
a step changes (step, models, momentum buffers, the stale-replay history, the sync workers'
filter state); with the stateless per-step generators that makes a resumed run bit-identical.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Callable

import torch
from torch import Tensor

from .. import aggregators
from ..attacks import AttackContext, ServerAttackContext, get_server_attack
from ..attacks import get as get_attack
from ..seeding import generator
from ..training.split import FileSampler
from ..training.models import build_model, evaluate, loss_fn as make_loss_fn
from ..training.pergrad import flat_params, per_file_gradients, set_flat_params
from .params import ByzSGDError, ByzSGDParams
from .protocol import (
    dmc_gather,
    drift,
    lipschitz_accept,
    lipschitz_coefficient,
    outliers_accept,
    outliers_bound,
    predicted_model,
    push_history,
    server_aggregate,
    server_update,
)
from .scheduler import SCHEDULERS, choose_senders

__all__ = ["ByzSGDCluster"]

HISTORY_LEN = 100  # reference models kept for the stale-replay behaviour


class ByzSGDCluster:
    """Servers' flat models ``(n_ps, d)`` and workers' filter state, stepped by :meth:`step`.

    Args:
        params: the deployment (:class:`ByzSGDParams`).
        dataset, model_name, model_kwargs: the task; ``build_model(model_name, dataset, seed)``
            gives the common initial model and the compute template.
        lr: base learning rate, or a function ``t -> lr_t`` (``T = "auto"`` uses ``lr(0)``).
        batch_size: examples per worker per step (one file each).
        server_attack / worker_attack: attack names (:mod:`byzantium.attacks.server`,
            :mod:`byzantium.attacks`) or ``None`` (then no node of that kind is Byzantine; ``f``
            stays the declared bound).
        scheduler: ``"adversarial"`` (default), ``"random"`` or ``"first"`` (:mod:`.scheduler`).
        server_rule / model_rule / dmc: ``"mda"`` / ``"median"`` / ``True`` is ByzSGD;
            ``"mean"`` / ``"mean"`` / ``False`` is the vanilla replicated baseline.
        momentum / weight_decay: the servers' update, as ``torch.optim.SGD`` (0 / 0: the paper's
            plain SGD, bit for bit). Momentum buffers are kept per server, ``(n_ps, d)``, and are
            not contracted by DMC (P12).
    """

    def __init__(
        self,
        params: ByzSGDParams,
        dataset: Any,
        model_name: str = "logreg",
        *,
        lr: float | Callable[[int], float] = 0.1,
        batch_size: int = 16,
        server_attack: str | None = None,
        server_attack_params: dict[str, Any] | None = None,
        worker_attack: str | None = None,
        worker_attack_params: dict[str, Any] | None = None,
        scheduler: str = "adversarial",
        server_rule: str = "mda",
        model_rule: str = "median",
        dmc: bool = True,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        model_kwargs: dict[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        if not isinstance(params, ByzSGDParams):
            raise ByzSGDError(f"ByzSGDCluster: params must be a ByzSGDParams, got {type(params).__name__}")
        if scheduler not in SCHEDULERS:
            raise ByzSGDError(f"ByzSGDCluster: scheduler must be one of {SCHEDULERS}, got {scheduler!r}")
        if model_rule not in ("median", "mean"):
            raise ByzSGDError(f"ByzSGDCluster: model_rule must be 'median' or 'mean', got {model_rule!r}")
        for name, v, hi in (("momentum", momentum, 1.0), ("weight_decay", weight_decay, math.inf)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0.0 <= v < hi):
                raise ByzSGDError(f"ByzSGDCluster: {name} must be a number in [0, {hi}), got {name}={v!r}")
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)
        self.params, self.dataset, self.seed = params, dataset, int(seed)
        self.lr_fn: Callable[[int], float] = lr if callable(lr) else (lambda t, _lr=float(lr): _lr)
        self.T = params.resolve_period(self.lr_fn(0))
        self.scheduler, self.server_rule, self.model_rule, self.dmc = scheduler, server_rule, model_rule, dmc
        self.template = build_model(model_name, dataset, seed=seed, **(model_kwargs or {}))
        self.loss_fn = make_loss_fn(dataset)
        theta0 = flat_params(self.template)
        self.d = theta0.numel()
        n_ps, n_w = params.n_ps, params.n_w
        self.models = theta0[None].repeat(n_ps, 1)
        # per-server heavy-ball buffers (n_ps, d); None until the first momentum step (P12)
        self.buffers: Tensor | None = None
        nb_ps = params.f_ps if server_attack is not None else 0
        nb_w = params.f_w if worker_attack is not None else 0
        self.byz_ps = list(range(n_ps - nb_ps, n_ps))
        self.correct_ps = list(range(n_ps - nb_ps))
        self.byz_w = list(range(n_w - nb_w, n_w))
        self.correct_w = list(range(n_w - nb_w))
        self.server_attack = (get_server_attack(server_attack, **(server_attack_params or {}))
                              if nb_ps else None)
        self.worker_attack = get_attack(worker_attack, **(worker_attack_params or {})) if nb_w else None
        if self.worker_attack is not None and self.worker_attack.data_level:
            raise ByzSGDError(f"ByzSGDCluster: data-level worker attack {worker_attack!r} is not supported")
        self.sampler = FileSampler(dataset.y_train, num_files=n_w, batch_size=n_w * batch_size, seed=seed,
                                   num_classes=dataset.num_classes or None)
        self.history: deque[Tensor] = deque(maxlen=HISTORY_LEN)
        # sync-variant worker state
        self.theta_prev: Tensor | None = None
        self.grad_prev: Tensor | None = None
        self.lip_history: list[list[float]] = [[] for _ in range(n_w)]
        self.t = 0
        # what a run records about how the cluster was built (attack on/off, q, optimizer); set
        # by byzantium.runtime.byzsgd_sim.build_byzsgd_cluster, free-form otherwise
        self.info: dict[str, Any] = {}

    # ------------------------------------------------------------------ helpers
    def files(self, t: int) -> tuple[Tensor, Tensor]:
        """Step ``t``'s files: ``x (n_w, b, ...)``, ``y (n_w, b)``; worker ``j`` owns file ``j``."""
        idx = self.sampler.sample(t, generator(self.seed, "data", t))
        return self.dataset.x_train[idx], self.dataset.y_train[idx]

    def correct_models(self) -> Tensor:
        """``(n_ps - f_ps, d)`` models of the correct servers (a copy)."""
        return self.models[self.correct_ps].clone()

    def median_model(self) -> Tensor:
        """CwMed of the correct servers' models: "the model a worker would see" (P15)."""
        return aggregators.median(self.models[self.correct_ps])

    def _combine(self, stack: Tensor, f: int) -> Tensor:
        if self.model_rule == "mean":
            return stack.mean(dim=0)
        return aggregators.median(stack, f=f)

    def _f_eff(self, f: int, n: int, received: int) -> int:
        return max(0, f - (n - received)) if self.params.variant == "sync" else f

    def _byzantine_models(self, t: int, kind: str, recipients: int, **extra: Any) -> dict[int, Tensor]:
        """Per Byzantine (non-silent) server: ``(recipients, d)`` models it sends."""
        out: dict[int, Tensor] = {}
        if self.server_attack is None:
            return out
        correct = self.models[self.correct_ps]
        for b in self.byz_ps:
            ctx = ServerAttackContext(
                step=t, kind=kind, correct=correct, reference=correct.mean(dim=0), recipients=recipients,
                generator=generator(self.seed, f"byzsgd.server_attack.{b}.{kind}", t),
                history=tuple(self.history), **extra)
            msg = self.server_attack(ctx)
            if msg is not None:
                out[b] = msg
        return out

    def _full_pull(self, t: int, workers: list[int], stats: dict[str, Any], tag: str = "pull") -> Tensor:
        """Models combined by ``workers`` from a pull to all servers: ``(len(workers), d)``.

        Messages: one model per replying server and worker; a sync fallback (``tag="fallback"``)
        first sends a request to the ``n_ps - 1`` servers it has not pulled from, and the server it
        pulled from does not send again (as the distributed runtime counts them)."""
        p = self.params
        byz = self._byzantine_models(t, "pull", len(workers))
        avail = self.correct_ps + sorted(byz)
        g = generator(self.seed, f"byzsgd.schedule.{tag}", t)
        out = torch.empty(len(workers), self.d, dtype=self.models.dtype)
        for r, _j in enumerate(workers):
            chosen = choose_senders(avail, self.byz_ps, p.quorum_ps, self.scheduler, g)
            stack = torch.stack([byz[s][r] if s in byz else self.models[s] for s in chosen])
            out[r] = self._combine(stack, self._f_eff(p.f_ps, p.n_ps, len(avail)))
        if tag == "fallback":
            already = sum(1 for j in workers if (j + t) % p.n_ps in avail)
            stats["messages"]["request"] += len(workers) * (p.n_ps - 1)
            stats["messages"]["pull"] += len(workers) * len(avail) - already
        else:
            stats["messages"]["pull"] += len(workers) * len(avail)
        return out

    def _gradients(self, thetas: Tensor, workers: list[int], x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Each worker's gradient on its file at its model, and its loss (a group's mean loss);
        workers with identical models share one vectorised pass."""
        uniq, inv = torch.unique(thetas, dim=0, return_inverse=True)
        grads = torch.empty(len(workers), self.d, dtype=thetas.dtype)
        losses = torch.empty(len(workers), dtype=torch.float64)
        widx = torch.tensor(workers)
        for u in range(uniq.shape[0]):
            rows = (inv == u).nonzero().flatten()
            set_flat_params(self.template, uniq[u])
            G, loss = per_file_gradients(self.template, self.loss_fn, x[widx[rows]], y[widx[rows]],
                                         return_loss=True)
            grads[rows] = G
            losses[rows] = loss
        return grads, losses

    # ------------------------------------------------------------------ one step
    def step(self) -> dict[str, Any]:
        """Run step ``self.t``; return its metrics (loss, drift, messages, filter counts)."""
        p, t = self.params, self.t
        lr = float(self.lr_fn(t))
        x, y = self.files(t)
        all_w = list(range(p.n_w))
        stats: dict[str, Any] = {
            "step": t, "lr": lr, "T": self.T,
            "messages": {"pull": 0, "push": 0, "gather": 0, "request": 0},
            "filter": {"accepted": 0, "rejected": 0, "rejected_honest": 0, "accepted_byzantine": 0,
                       "rejected_lipschitz": 0, "rejected_outliers": 0, "rejected_outliers_honest": 0,
                       "timeouts": 0, "fallbacks": 0},
        }
        if self.server_attack is not None:  # only a Byzantine server reads it (stale replay)
            self.history.append(self.models[self.correct_ps].mean(dim=0))
        sync_normal = p.variant == "sync" and t % self.T != 0 and self.theta_prev is not None
        if sync_normal:
            thetas, grads, loss = self._sync_pull(t, lr, x, y, stats)
        else:
            thetas = self._full_pull(t, all_w, stats)
            grads, losses = self._gradients(thetas, all_w, x, y)
            loss = float(losses[self.correct_w].mean())
        if p.variant == "sync":
            self.theta_prev, self.grad_prev = thetas, grads
        stats["loss"] = loss
        self._push(t, lr, grads, stats)
        stats["drift_pre_gather"] = drift(self.models[self.correct_ps])
        stats["gathered"] = bool(self.dmc and (t + 1) % self.T == 0)
        if stats["gathered"]:
            self.gather(t, stats)
        stats["drift"] = drift(self.models[self.correct_ps])
        self.t += 1
        return stats

    def _push(self, t: int, lr: float, grads: Tensor, stats: dict[str, Any]) -> None:
        p = self.params
        honest = grads[self.correct_w]
        own = grads[self.byz_w]
        g_sched = generator(self.seed, "byzsgd.schedule.push", t)
        new = self.models.clone()
        bufs = None
        if self.momentum != 0.0:
            bufs = self.buffers.clone() if self.buffers is not None else torch.zeros_like(self.models)
        for s in self.correct_ps:
            rows = grads
            if self.worker_attack is not None:
                ctx = AttackContext(
                    honest=honest, n=min(p.quorum_w, p.n_w), num_byzantine=len(self.byz_w), own=own,
                    rule=lambda G: server_aggregate(G, p.f_w, self.server_rule),
                    generator=generator(self.seed, f"byzsgd.worker_attack.{s}", t))
                rows = grads.clone()
                rows[self.byz_w] = self.worker_attack(ctx)
            chosen = choose_senders(range(p.n_w), self.byz_w, p.quorum_w, self.scheduler, g_sched)
            agg = server_aggregate(rows[chosen], self._f_eff(p.f_w, p.n_w, p.n_w), self.server_rule)
            buf = self.buffers[s] if self.buffers is not None else None
            new[s], buf = server_update(self.models[s], buf, agg, lr, momentum=self.momentum,
                                        weight_decay=self.weight_decay)
            if bufs is not None and buf is not None:
                bufs[s] = buf
        self.models = new
        self.buffers = bufs
        stats["messages"]["push"] += p.n_w * p.n_ps

    def gather(self, t: int, stats: dict[str, Any] | None = None) -> None:
        """The DMC gather phase of step ``t``: every correct server replaces its model by the CwMed
        of ``q_ps`` models, its own included (Byzantine servers may send each a different one)."""
        stats = stats if stats is not None else {"messages": {"gather": 0}}
        p = self.params
        byz = self._byzantine_models(t, "gather", len(self.correct_ps))
        avail = self.correct_ps + sorted(byz)
        g = generator(self.seed, "byzsgd.schedule.gather", t)
        new = self.models.clone()
        for r, s in enumerate(self.correct_ps):
            chosen = choose_senders(avail, self.byz_ps, p.quorum_ps, self.scheduler, g, must=[s])
            others = [byz[o][r] if o in byz else self.models[o] for o in chosen if o != s]
            received = torch.stack(others) if others else self.models.new_empty((0, self.d))
            f = self._f_eff(p.f_ps, p.n_ps, len(avail))
            new[s] = (torch.cat([self.models[s][None], received]).mean(dim=0) if self.model_rule == "mean"
                      else dmc_gather(self.models[s], received, f))
        self.models = new
        # every correct server sends to every other server; Byzantine ones as they choose
        stats["messages"]["gather"] += len(self.correct_ps) * (p.n_ps - 1) + len(byz) * len(self.correct_ps)

    def _sync_pull(self, t: int, lr: float, x: Tensor, y: Tensor,
                   stats: dict[str, Any]) -> tuple[Tensor, Tensor, float]:
        """Sync normal step: one server per worker, filters, fallback (§2.7)."""
        p, n_w = self.params, self.params.n_w
        assert self.theta_prev is not None and self.grad_prev is not None
        since = t % self.T
        pred = predicted_model(self.theta_prev, self.grad_prev, lr)
        gnorm = self.grad_prev.norm(dim=1)
        est = torch.tensor([outliers_bound(lr, float(v), self.T, n_w, p.f_w, since) for v in gnorm])
        ascent = self.grad_prev / gnorm.clamp_min(1e-12)[:, None]
        byz = self._byzantine_models(t, "pull", n_w, predicted=pred, bounds=est, directions=ascent)
        thetas = self.theta_prev.clone()
        missing: list[int] = []
        for j in range(n_w):
            src = (j + t) % p.n_ps
            if src in self.correct_ps:
                thetas[j] = self.models[src]
            elif src in byz:
                thetas[j] = byz[src][j]
            else:
                missing.append(j)  # silent server: timeout, fall back
        stats["messages"]["pull"] += n_w - len(missing)
        ok = [j for j in range(n_w) if j not in missing]
        grads = torch.zeros(n_w, self.d, dtype=thetas.dtype)
        losses = torch.zeros(n_w, dtype=torch.float64)
        if ok:
            grads[ok], losses[ok] = self._gradients(thetas[ok], ok, x, y)
        reject = list(missing)
        fl = stats["filter"]
        fl["timeouts"] += len(missing)
        for j in ok:
            k = lipschitz_coefficient(thetas[j], self.theta_prev[j], grads[j], self.grad_prev[j])
            lip_ok = lipschitz_accept(k, self.lip_history[j], p.n_ps, p.f_ps)
            gref = self.grad_prev[j] if p.outliers_norm == "previous" else grads[j]
            bound = outliers_bound(lr, float(gref.norm()), self.T, n_w, p.f_w, since)
            out_ok = outliers_accept(thetas[j], pred[j], bound)
            honest_src = (j + t) % p.n_ps in self.correct_ps
            push_history(self.lip_history[j], k)  # as the prototype: every k, accepted or not
            if lip_ok and out_ok:
                fl["accepted"] += 1
                fl["accepted_byzantine"] += int(not honest_src)
            else:
                reject.append(j)
                fl["rejected"] += 1
                fl["rejected_honest"] += int(honest_src)
                fl["rejected_lipschitz"] += int(not lip_ok)
                fl["rejected_outliers"] += int(not out_ok)
                fl["rejected_outliers_honest"] += int(not out_ok and honest_src)
        if reject:
            reject.sort()
            fl["fallbacks"] += len(reject)
            thetas[reject] = self._full_pull(t, reject, stats, tag="fallback")
            grads[reject], losses[reject] = self._gradients(thetas[reject], reject, x, y)
        return thetas, grads, float(losses[self.correct_w].mean())

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        """Everything :meth:`step` changes, as tensors and plain lists/ints (``torch.save`` with
        ``weights_only`` loading): step ``t``, the servers' models and momentum buffers, the
        stale-replay history, and the sync workers' previous model/gradient and Lipschitz
        histories. Copies, so later steps do not alter a saved state."""
        def cp(v: Tensor | None) -> Tensor | None:
            return None if v is None else v.clone()

        return {
            "kind": "byzsgd", "t": self.t, "n_ps": self.params.n_ps, "n_w": self.params.n_w,
            "d": self.d, "T": self.T, "models": self.models.clone(), "buffers": cp(self.buffers),
            "history": [h.clone() for h in self.history], "theta_prev": cp(self.theta_prev),
            "grad_prev": cp(self.grad_prev), "lip_history": [list(h) for h in self.lip_history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of a cluster built with the same parameters; a state of
        another shape (``n_ps``, ``n_w``, ``d``, ``T``) or without momentum buffers where this
        cluster uses momentum (and vice versa) raises :class:`ByzSGDError` naming the field."""
        where = "ByzSGDCluster.load_state_dict"
        kind = state.get("kind") if isinstance(state, dict) else type(state).__name__
        if kind != "byzsgd":
            raise ByzSGDError(f"{where}: not a ByzSGD cluster state (kind={kind!r})")
        for key, mine in (("n_ps", self.params.n_ps), ("n_w", self.params.n_w), ("d", self.d), ("T", self.T)):
            if state.get(key) != mine:
                raise ByzSGDError(
                    f"{where}: the state has {key}={state.get(key)!r}, this cluster {key}={mine}")
        t = state["t"]
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise ByzSGDError(f"{where}: t must be an int >= 0, got t={t!r}")
        shape = (self.params.n_ps, self.d)
        models, buffers = state["models"], state["buffers"]
        if not isinstance(models, Tensor) or tuple(models.shape) != shape:
            raise ByzSGDError(f"{where}: models must be a tensor of shape {shape}, got "
                              f"{getattr(models, 'shape', type(models).__name__)}")
        if buffers is not None and (self.momentum == 0.0 or tuple(buffers.shape) != shape):
            raise ByzSGDError(f"{where}: buffers of shape {tuple(buffers.shape)} do not fit this cluster "
                              f"(momentum={self.momentum}, expected {shape})")
        if buffers is None and self.momentum != 0.0 and t > 0:
            raise ByzSGDError(f"{where}: the state has no momentum buffers at t={t} but this cluster "
                              f"uses momentum={self.momentum}")
        lip = state["lip_history"]
        if len(lip) != self.params.n_w:
            raise ByzSGDError(f"{where}: lip_history must have n_w={self.params.n_w} lists, got {len(lip)}")
        self.t = t
        self.models = models.clone()
        self.buffers = None if buffers is None else buffers.clone()
        self.history = deque((h.clone() for h in state["history"]), maxlen=HISTORY_LEN)
        self.theta_prev = None if state["theta_prev"] is None else state["theta_prev"].clone()
        self.grad_prev = None if state["grad_prev"] is None else state["grad_prev"].clone()
        self.lip_history = [[float(v) for v in h] for h in lip]

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, split: str = "test") -> dict[str, float]:
        """Accuracy (or loss) of every correct server: min / mean / max (P15), and the loss mean."""
        accs, losses = [], []
        for s in self.correct_ps:
            set_flat_params(self.template, self.models[s])
            res = evaluate(self.template, self.dataset, split=split)
            accs.append(res.get("accuracy", math.nan))
            losses.append(res["loss"])
        return {"acc_min": min(accs), "acc_mean": sum(accs) / len(accs), "acc_max": max(accs),
                "loss_mean": sum(losses) / len(losses)}

    def run(self, steps: int) -> list[dict[str, Any]]:
        """``steps`` calls of :meth:`step`; the list of their metrics."""
        return [self.step() for _ in range(steps)]
