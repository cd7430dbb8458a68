"""dSTAR-I: aggregate the first k of K arrivals, filtered by deviation from an ensemble median
scaled by the server's trusted validation gradient (see byzantium.aggregators.dstar)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..aggregators.dstar import dstar_filter
from ..assignments import baseline
from ..attacks import AttackContext
from .base import StepInfo, StepView

__all__ = ["DStarScheme"]


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
        if is_byz.any() and view.attack is not None:
            files = order[is_byz]
            ctx = AttackContext(
                honest=X[~is_byz],
                own=G[files],
                n=int(order.numel()),
                num_byzantine=int(is_byz.sum()),
                rule=lambda stack: self._filter(stack, g_v).gradient,
                generator=view.generator,
            )
            X[is_byz] = view.attack(ctx, files).to(X.dtype)
        res = self._filter(X, g_v)
        accepted_byz = int((res.accepted & is_byz).sum())
        info = StepInfo(
            distorted_files=accepted_byz,
            dropped_files=int((~res.accepted).sum()),
            received=int(order.numel()),
            byzantine_accepted=accepted_byz,
        )
        return res.gradient.to(G.dtype), info
