"""DRACO's cyclic code: each worker sends one linear combination of its 2s+1 part-gradients; the
server locates up to s adversarial messages and recovers the exact sum of all part-gradients."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..assignments import CyclicCode
from ..attacks import AttackContext
from .base import StepInfo, StepView

__all__ = ["CyclicScheme"]


def _real_view(Y: Tensor) -> Tensor:
    """Complex ``(m, d)`` messages as real ``(m, 2d)`` rows (what an attack manipulates)."""
    return torch.view_as_real(Y).flatten(1)


def _complex_view(X: Tensor) -> Tensor:
    return torch.view_as_complex(X.to(torch.float64).reshape(X.shape[0], -1, 2).contiguous())


class CyclicScheme:
    """DRACO-cyc: ``K`` parts, worker ``j`` encodes parts ``j..j+2s``; exact decoding with up to
    ``s`` Byzantine (or missing) messages.

    Messages travel as complex128 in the simulator: the locator separates adversaries from honest
    rows by ``|Lambda(z_j)|``, which float32/complex64 round-off blurs (redundancy.md §3.4 item 7).
    A missing message (straggler) is decoded as an error at a known position, so stragglers and
    Byzantine workers together must not exceed ``s``. The update is the mean of the K
    part-gradients, i.e. the adversary-free full-batch gradient.
    """

    def __init__(self, name: str, K: int, s: int, *, q: int) -> None:
        self.name = name
        self.code = CyclicCode(K, s)
        self.assignment = self.code.assignment
        self.num_workers = K
        self.num_files = K
        self.s = s
        self.q = q
        self.aggregator_spec = "cyclic decode (exact mean)"
        self.aggregator_f = s

    def load(self) -> Tensor:
        return torch.full((self.num_workers,), float(self.code.r), dtype=torch.float64)

    def worst_case_workers(self, q: int) -> tuple[int, ...]:
        """Any q positions are equivalent for the code (it is cyclic): take the first q."""
        return tuple(range(q))

    def describe(self) -> dict[str, Any]:
        return {"assignment": self.assignment.name, "replication": self.code.r,
                "load": self.code.r, "s": self.s}

    def simulate(self, view: StepView) -> tuple[Tensor, StepInfo]:
        G = view.honest
        Y = self.code.encode(G.to(torch.float64))
        byz = view.byzantine & view.received
        R = Y.clone()
        if byz.any() and view.attack is not None:
            byz_ids = torch.nonzero(byz).flatten()
            honest = ~view.byzantine & view.received
            if view.data_level:
                parts = torch.tensor([self.assignment.files_of[j] for j in byz_ids.tolist()])
                flipped = view.attack(None, parts.flatten()).to(torch.float64)
                flipped = flipped.view(len(byz_ids), self.code.r, -1)
                for t, j in enumerate(byz_ids.tolist()):
                    R[j] = self.code.encode_worker(j, flipped[t])
            else:
                ctx = AttackContext(
                    honest=_real_view(Y[honest]),
                    own=_real_view(Y[byz_ids]),
                    n=self.num_workers,
                    num_byzantine=int(byz.sum()),
                    rule=None,
                    generator=view.generator,
                )
                R[byz_ids] = _complex_view(view.attack(ctx, byz_ids))
        missing = ~view.received
        if missing.any():
            R[missing] = 0
        res = self.code.decode(R, view.generator)
        grad = res.mean().to(G.dtype)
        flagged = set(res.flagged)
        byz_ids = torch.nonzero(view.byzantine).flatten().tolist()
        missed = [j for j in byz_ids if j not in flagged]
        info = StepInfo(
            distorted_files=0 if res.residual < 1e-6 else len(missed),
            dropped_files=int(missing.sum()),
            received=int(view.received.sum()),
            byzantine_accepted=len(missed),
            extra={"decode_residual": res.residual},
        )
        return grad, info
