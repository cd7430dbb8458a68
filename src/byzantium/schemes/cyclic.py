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
        self.first_k: int | None = None  # arrival policy: the run's own
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
        R = Y.clone()
        for j, row in self._attack_rows(view, Y).items():
            R[j] = row
        grad, info = self._decode(R, view.received, view.generator, view.byzantine)
        return grad.to(G.dtype), info

    def _decode(self, R: Tensor, received: Tensor, generator: torch.Generator,
                byzantine: Tensor | None) -> tuple[Tensor, StepInfo]:
        """The decoder both runtimes use: missing messages are erasures (zeroed in ``R``, a copy
        the caller owns), the code locates the adversaries on the secret projection drawn from
        ``generator`` and returns the exact mean part-gradient. ``byzantine`` (the observer's
        knowledge) only counts the Byzantine workers the locator did not flag."""
        missing = ~received
        if missing.any():
            R[missing] = 0
        res = self.code.decode(R, generator)
        flagged = set(res.flagged)
        byz_ids = [] if byzantine is None else torch.nonzero(byzantine).flatten().tolist()
        missed = [j for j in byz_ids if j not in flagged]
        info = StepInfo(
            distorted_files=0 if res.residual < 1e-6 else len(missed),
            dropped_files=int(missing.sum()),
            received=int(received.sum()),
            byzantine_accepted=len(missed),
            extra={"decode_residual": res.residual},
        )
        return res.mean(), info

    # ------------------------------------------------------------------ real messages
    # Used by the distributed runtime (byzantium.runtime.distributed); see VoteScheme.
    message_dtype = torch.complex128

    def message_shape(self, d: int) -> tuple[int, ...]:
        """One complex128 vector ``y_j`` of length ``d`` per worker."""
        return (int(d),)

    def worker_message(self, worker: int, file_grads: Tensor) -> Tensor:
        """``y_j = sum_t W[j, files_of[j][t]] g_t`` (:meth:`CyclicCode.encode_worker`) from the
        worker's ``(r, d)`` part-gradients in ``files_of[j]`` order; complex128 ``(d,)``."""
        return self.code.encode_worker(worker, file_grads.to(torch.float64))

    def byzantine_messages(self, view: StepView) -> dict[int, Tensor]:
        """What each Byzantine worker of ``view`` sends (complex128 ``(d,)``): the rows
        :meth:`simulate` writes into ``R`` (same attack call, same context), or the honest
        encoding for a Byzantine worker that is not received in ``view``."""
        Y = self.code.encode(view.honest.to(torch.float64))
        out = {j: Y[j].clone() for j in torch.nonzero(view.byzantine).flatten().tolist()}
        out.update(self._attack_rows(view, Y))
        return out

    def _attack_rows(self, view: StepView, Y: Tensor) -> dict[int, Tensor]:
        """The received Byzantine workers' messages under the attack (complex128), by worker."""
        byz = view.byzantine & view.received
        if not (byz.any() and view.attack is not None):
            return {}
        ids = torch.nonzero(byz).flatten()
        if view.data_level:  # honest encodings of gradients on corrupted labels
            parts = torch.tensor([self.assignment.files_of[j] for j in ids.tolist()])
            flipped = view.attack(None, parts.flatten()).to(torch.float64)
            flipped = flipped.view(len(ids), self.code.r, -1)
            return {j: self.code.encode_worker(j, flipped[t]) for t, j in enumerate(ids.tolist())}
        honest = ~view.byzantine & view.received
        ctx = AttackContext(
            honest=_real_view(Y[honest]),
            own=_real_view(Y[ids]),
            n=self.num_workers,
            num_byzantine=int(byz.sum()),
            rule=None,
            generator=view.generator,
        )
        rows = _complex_view(view.attack(ctx, ids))
        return {j: rows[t] for t, j in enumerate(ids.tolist())}

    def server_aggregate(
        self,
        messages: Tensor,
        received: Tensor,
        *,
        step: int,
        generator: torch.Generator,
        byzantine: Tensor | None = None,
        **_: Any,
    ) -> tuple[Tensor, StepInfo]:
        """Decode the received messages (``(K, d)`` complex128; missing rows are erasures, set to
        0 as in :meth:`simulate`) and return the mean part-gradient as float32. ``generator``
        draws the decoder's secret projection. ``byzantine`` (instrumentation only) counts the
        Byzantine workers the locator did not flag."""
        K = self.num_workers
        if messages.dim() != 2 or messages.shape[0] != K or not messages.is_complex():
            raise ValueError(
                f"{self.name}.server_aggregate: messages must be a complex ({K}, d) tensor, got "
                f"{messages.dtype} {tuple(messages.shape)}"
            )
        R = messages.to(torch.complex128).clone()
        grad, info = self._decode(R, received.to(torch.bool), generator, byzantine)
        return grad.to(torch.float32), info

    def check_live(self, alive: Tensor) -> str | None:
        """The code corrects ``s`` errors in all: dead workers (erasures decoded as errors) plus
        the ``q`` Byzantine ones must not exceed ``s``."""
        q = self.q
        dead = int((~alive.to(torch.bool)).sum())
        if dead + q > self.s:
            return (f"{self.name}: {dead} dead worker(s) + q={q} Byzantine exceed the s={self.s} "
                    "errors the cyclic code corrects")
        return None
