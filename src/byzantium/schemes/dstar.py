"""dSTAR-I: aggregate the first k of K arrivals, filtered by deviation from an ensemble median
scaled by the server's trusted validation gradient (see byzantium.aggregators.dstar)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from ..aggregators.dstar import dstar_filter
from ..assignments import baseline
from ..attacks import AttackContext
from ..typed import ConfigError
from .base import StepInfo, StepView
from .registry import SchemeContext, scheme

__all__ = ["DStarScheme", "DStarParams"]


@dataclass
class DStarParams:
    k: int | None = None
    """Arrivals aggregated (first k); default: the run's stragglers.k, else K - f."""
    lam: float = 2.0
    """Filter threshold: deviation from the ensemble median, in units of the validation scale."""
    variant: Literal["A", "B", "C", "D", "E"] = "A"
    f: int | str = "auto"
    """Byzantine arrivals tolerated; ``auto``: the run's q."""

    def __post_init__(self) -> None:
        if not self.lam >= 1:
            raise ConfigError(f"lam: must be >= 1, got {self.lam}")
        if isinstance(self.f, str) and self.f != "auto":
            raise ConfigError(f"f: expected an integer >= 0 or 'auto', got {self.f!r}")
        if isinstance(self.f, int) and self.f < 0:
            raise ConfigError(f"f: must be >= 0, got {self.f}")
        if self.k is not None and self.k < 1:
            raise ConfigError(f"k: must be >= 1, got {self.k}")


@scheme("dstar", params=DStarParams,
        summary="first k arrivals, ensemble-median deviation filter, mean of survivors")
def build_dstar(label: str, p: DStarParams, ctx: SchemeContext) -> "DStarScheme":
    f = ctx.q if p.f == "auto" else int(p.f)
    k = p.k or ctx.first_k or ctx.workers - f
    return DStarScheme(label, ctx.workers, q=ctx.q, k=k, f=f, lam=p.lam, variant=p.variant)


class DStarScheme:
    """First-k arrivals (``k >= 2f+1``; rushing Byzantines arrive first by default), then the
    dSTAR-I filter (``variant`` A-E, threshold ``lam``), then the mean of the survivors."""

    def __init__(
        self, name: str, K: int, *, q: int, k: int, f: int, lam: float = 2.0, variant: str = "A"
    ) -> None:
        self.name = name
        self.assignment = baseline(K)
        self.num_workers = K
        self.num_files = K
        self.q, self.k, self.f, self.lam, self.variant = q, k, f, lam, variant
        self.first_k = k  # the scheme's own arrival policy: aggregate the first k
        self.aggregator_spec = f"dstar-I variant {variant} (lam={lam:g}, k={k})"
        self.aggregator_f = f
        # validate k, f and lam once, on dummy data, so a bad config fails before training
        dstar_filter(torch.zeros(k, 1), torch.zeros(1), f=f, lam=lam, variant=variant,
                     num_workers=K)

    def load(self) -> Tensor:
        return torch.ones(self.num_workers, dtype=torch.float64)

    def worst_case_workers(self, q: int) -> tuple[int, ...]:
        """One file per worker: every placement is equivalent; take the first q."""
        return tuple(range(q))

    def describe(self) -> dict[str, Any]:
        return {"assignment": "baseline", "k": self.k, "lam": self.lam, "variant": self.variant}

    def _filter(self, X: Tensor, g_v: Tensor):
        return dstar_filter(X, g_v, f=self.f, lam=self.lam, variant=self.variant,
                            num_workers=self.num_workers)

    def simulate(self, view: StepView) -> tuple[Tensor, StepInfo]:
        G = view.honest
        order = view.arrival_order
        is_byz = view.byzantine[order]
        X = G[order].clone()
        g_v = view.validation() if view.validation is not None else None
        rows = self._attack_rows(view, g_v)
        if rows is not None:
            X[is_byz] = rows.to(X.dtype)
        grad, info = self._decode(X, g_v, is_byz)
        return grad.to(G.dtype), info

    def _decode(self, X: Tensor, g_v: Tensor | None, is_byz: Tensor) -> tuple[Tensor, StepInfo]:
        """The decoder both runtimes use: the dSTAR-I filter over the arrivals ``X`` (in arrival
        order) with the validation gradient ``g_v``. ``is_byz`` (the observer's knowledge) only
        counts the Byzantine rows the filter accepted."""
        res = self._filter(X, g_v)
        accepted_byz = int((res.accepted & is_byz).sum())
        info = StepInfo(
            distorted_files=accepted_byz,
            dropped_files=int((~res.accepted).sum()),
            received=int(X.shape[0]),
            byzantine_accepted=accepted_byz,
        )
        return res.gradient, info

    # ------------------------------------------------------------------ real messages
    # Used by the distributed runtime (byzantium.runtime.distributed); see VoteScheme.
    message_dtype = torch.float32

    def message_shape(self, d: int) -> tuple[int, ...]:
        """One gradient ``(d,)`` per worker."""
        return (int(d),)

    def worker_message(self, worker: int, file_grads: Tensor) -> Tensor:
        """The gradient of the worker's one file (``file_grads`` is ``(1, d)``)."""
        if file_grads.dim() != 2 or file_grads.shape[0] != 1:
            raise ValueError(
                f"{self.name}.worker_message: expected the (1, d) gradient of file {worker}, got "
                f"shape {tuple(file_grads.shape)}"
            )
        return file_grads[0].to(torch.float32)

    def byzantine_messages(self, view: StepView) -> dict[int, Tensor]:
        """What each Byzantine worker of ``view`` sends: the rows :meth:`simulate` writes for the
        Byzantine arrivals among the first ``k`` (same attack call), else the honest gradient."""
        G = view.honest
        out = {w: G[w].to(torch.float32).clone()
               for w in torch.nonzero(view.byzantine).flatten().tolist()}
        order = view.arrival_order
        g_v = view.validation() if view.validation is not None else None
        rows = self._attack_rows(view, g_v)
        if rows is None:
            return out
        for t, w in enumerate(order[view.byzantine[order]].tolist()):
            out[w] = rows[t].to(torch.float32)
        return out

    def _attack_rows(self, view: StepView, g_v: Tensor | None) -> Tensor | None:
        """The Byzantine arrivals' vectors (in arrival order), or None without an attack."""
        order = view.arrival_order
        is_byz = view.byzantine[order]
        if not (is_byz.any() and view.attack is not None):
            return None
        G = view.honest
        files = order[is_byz]
        ctx = AttackContext(
            honest=G[order[~is_byz]],
            own=G[files],
            n=int(order.numel()),
            num_byzantine=int(is_byz.sum()),
            rule=lambda stack: self._filter(stack, g_v).gradient,
            generator=view.generator,
        )
        return view.attack(ctx, files)

    def server_aggregate(
        self,
        messages: Tensor,
        received: Tensor,
        *,
        step: int,
        validation: Any = None,
        order: Tensor | None = None,
        byzantine: Tensor | None = None,
        **_: Any,
    ) -> tuple[Tensor, StepInfo]:
        """The dSTAR-I filter over the accepted messages, in ``order`` (default: received worker
        ids ascending; variants A-D do not depend on the order), with the server's validation
        gradient ``validation()``."""
        ids = torch.nonzero(received.to(torch.bool)).flatten() if order is None else order
        if ids.numel() == 0:
            raise RuntimeError(f"{self.name}: step {step}: no message to aggregate")
        g_v = validation() if callable(validation) else validation
        is_byz = (byzantine.to(torch.bool)[ids] if byzantine is not None
                  else torch.zeros(ids.numel(), dtype=torch.bool))
        grad, info = self._decode(messages[ids], g_v, is_byz)
        return grad.to(torch.float32), info

    def check_live(self, alive: Tensor) -> str | None:
        """First-``k`` needs ``k`` live workers."""
        n = int(alive.to(torch.bool).sum())
        if n < self.k:
            return f"{self.name}: {n} live worker(s) left, fewer than k={self.k} (first-k arrivals)"
        return None
