"""Vote schemes: an assignment, a majority vote per file, then an aggregation rule.

One class covers five systems of the table in DESIGN.md, which differ only in their parts:

============  ==========================  ===========================
system        assignment                  aggregator
============  ==========================  ===========================
vanilla       baseline (1 file/worker)    mean
robust        baseline                    any rule ("median", ...)
DRACO-rep     repetition, r = 2s+1        mean (exact)
DETOX         repetition, r               hierarchical rule (MoM, ...)
ByzShield     MOLS / Ramanujan            any rule over file votes
============  ==========================  ===========================

In the simulator every replica of a file is the same honest gradient, computed once; only files
that hold a Byzantine copy or miss a copy are assembled into ``(m, r, d)`` copy stacks and voted on
with the real tolerance-based vote (the others would vote unanimously by construction).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..aggregators import Aggregator, get
from ..assignments import Assignment, worst_case
from ..attacks import AttackContext
from ..decoding.vote import majority_vote
from .base import StepInfo, StepView

__all__ = ["VoteScheme", "two_value_vote"]


def two_value_vote(
    h: Tensor, b: Tensor, byz: Tensor, present: Tensor, *, r: int, rtol: float, atol: float = 0.0
) -> tuple[Tensor, Tensor]:
    """:func:`~byzantium.decoding.majority_vote` for files whose copies take two values only.

    In the simulator every honest copy of file ``i`` is the same tensor ``h[i]`` and the colluding
    Byzantine copies all send ``b[i]``; ``byz[i, c]`` says which copy is which and ``present``
    which arrived. The vote's outcome then follows from counts and one distance per file, with the
    exact rule of ``majority_vote`` (support = number of valid copies within tolerance, winner = the
    copy of largest support, lowest index on ties, needs ``(r+1)//2``), without building the
    ``(m, r, d)`` copy stack. Returns ``(byzantine_wins, ok)``, both ``(m,)`` bool.
    Equivalence with ``majority_vote`` is tested on random two-valued stacks.
    """
    f64 = torch.float64
    nh = torch.linalg.vector_norm(h, dim=1, dtype=f64)
    nb = torch.linalg.vector_norm(b, dim=1, dtype=f64)
    fin_h, fin_b = torch.isfinite(nh), torch.isfinite(nb)
    dist = torch.linalg.vector_norm(h - b, dim=1, dtype=f64)
    agree = fin_h & fin_b & (dist <= rtol * torch.maximum(nh, nb) + atol)
    valid = present & torch.where(byz, fin_b.unsqueeze(1), fin_h.unsqueeze(1))
    cnt_h = (valid & ~byz).sum(1)
    cnt_b = (valid & byz).sum(1)
    sup_h = cnt_h + agree * cnt_b
    sup_b = cnt_b + agree * cnt_h
    support = torch.where(byz, sup_b.unsqueeze(1), sup_h.unsqueeze(1))
    support = torch.where(valid, support, torch.zeros_like(support))
    winner = torch.argmax(support, dim=1)  # first maximum: lowest copy index
    best = support.gather(1, winner.unsqueeze(1)).squeeze(1)
    ok = best >= (r + 1) // 2
    win_byz = byz.gather(1, winner.unsqueeze(1)).squeeze(1) & ok
    return win_byz, ok


class VoteScheme:
    """Majority vote per file over its ``r`` copies, then ``aggregator`` over the voted files.

    ``f="auto"`` sets the rule's ``f`` to the worst-case number of files the ``q`` Byzantine
    workers can distort on this assignment (exact search, :func:`byzantium.assignments.worst_case`),
    the choice of the ByzShield and DETOX authors. A file with no majority is dropped from the
    aggregation (``on_no_majority="drop"``) or replaced by the coordinate median of its copies
    (``"median"``).
    """

    def __init__(
        self,
        name: str,
        assignment: Assignment,
        *,
        q: int,
        aggregator: str = "mean",
        aggregator_params: dict[str, Any] | None = None,
        f: int | str = "auto",
        vote_rtol: float = 1e-5,
        on_no_majority: str = "drop",
    ) -> None:
        self.name = name
        self.first_k: int | None = None  # arrival policy: the run's own
        self.assignment = assignment
        self.num_workers = assignment.K
        self.num_files = assignment.num_files
        self.r = assignment.r
        self.majority = (self.r + 1) // 2
        self.q = q
        self._worst = worst_case(assignment, q) if q > 0 else None
        self.c_max = self._worst.c_max if self._worst is not None else 0
        self.aggregator_f = self.c_max if f == "auto" else int(f)
        self.aggregator_spec = aggregator
        self.aggregator: Aggregator = get(aggregator, f=self.aggregator_f, **(aggregator_params or {}))
        self.aggregator.check(self.num_files)
        self.vote_rtol = vote_rtol
        if on_no_majority not in ("drop", "median"):  # "raise" would abort training
            raise ValueError(
                f"{name}: on_no_majority must be 'drop' or 'median', got {on_no_majority!r}"
            )
        self.on_no_majority = on_no_majority
        self.workers_of = torch.tensor(assignment.workers_of, dtype=torch.long)  # (files, r)

    # ------------------------------------------------------------------ static facts
    def load(self) -> Tensor:
        return torch.tensor([len(fs) for fs in self.assignment.files_of], dtype=torch.float64)

    def worst_case_workers(self, q: int) -> tuple[int, ...]:
        if q == 0:
            return ()
        if q == self.q and self._worst is not None:
            return tuple(self._worst.workers)
        return tuple(worst_case(self.assignment, q).workers)

    def describe(self) -> dict[str, Any]:
        return {
            "assignment": self.assignment.name,
            "replication": self.r,
            "load": self.assignment.l,
            "c_max": self.c_max,
        }

    # ------------------------------------------------------------------ one step
    def simulate(self, view: StepView) -> tuple[Tensor, StepInfo]:
        G = view.honest
        wo = self.workers_of
        present = view.received[wo]
        byz_in = view.byzantine[wo] & present  # (files, r): received Byzantine copies
        slots, values = self._attack_values(view)

        contested = ~present.all(1)
        if values is not None:
            contested |= byz_in.any(1)
        ci = torch.nonzero(contested).flatten()
        keep = torch.ones(self.num_files, dtype=torch.bool)
        distorted = dropped = 0
        voted = None
        if ci.numel():
            h = G[ci]
            if values is not None:
                slot_of = torch.full((self.num_files,), -1, dtype=torch.long)
                slot_of[slots] = torch.arange(slots.numel())
                rows = slot_of[ci]
                b = torch.where((rows >= 0).unsqueeze(1), values[rows.clamp(min=0)].to(h.dtype), h)
            else:
                b = h
            win_byz, ok = two_value_vote(
                h, b, byz_in[ci], present[ci], r=self.r, rtol=self.vote_rtol
            )
            voted = torch.where(win_byz.unsqueeze(1), b, h)
            usable = ok
            if self.on_no_majority == "median" and not bool(ok.all()):
                bad = torch.nonzero(~ok).flatten()
                copies = torch.where(byz_in[ci][bad].unsqueeze(2), b[bad].unsqueeze(1), h[bad].unsqueeze(1))
                res = majority_vote(copies, present[ci][bad], rtol=self.vote_rtol,
                                    on_no_majority="median")
                voted[bad] = res.values
                usable = torch.ones_like(ok)
            keep[ci[~usable]] = False
            dropped = int((~ok).sum())
            distorted = int((usable & (voted != h).any(1)).sum())
        stack = G if voted is None else G.index_copy(0, ci, voted.to(G.dtype))
        stack = stack[keep]
        if stack.shape[0] == 0:
            raise RuntimeError(
                f"{self.name}: step {view.step}: every file was dropped (no majority, or no copy "
                "arrived); nothing to aggregate"
            )
        grad = self.aggregator(stack)
        info = StepInfo(
            distorted_files=distorted,
            dropped_files=dropped,
            received=int(view.received.sum()),
        )
        return grad, info

    # ------------------------------------------------------------------ real messages
    # The distributed runtime (byzantium.runtime.distributed) runs the same object: each worker
    # sends `worker_message`, Byzantine workers send `byzantine_messages`, and the server calls
    # `server_aggregate` on what arrived (validated frames only).
    message_dtype = torch.float32

    def message_shape(self, d: int) -> tuple[int, ...]:
        """Shape of one worker's message: its ``l`` file gradients, ``(l, d)``."""
        return (self.assignment.l, int(d))

    def worker_message(self, worker: int, file_grads: Tensor) -> Tensor:
        """What honest worker ``worker`` sends: the gradients of its files ``files_of[worker]``
        (an ``(l, d)`` stack in that order) as float32, unchanged (the vote needs every copy)."""
        l = self.assignment.l
        if not 0 <= worker < self.num_workers:
            raise ValueError(
                f"{self.name}.worker_message: worker must lie in [0, {self.num_workers}), got {worker}"
            )
        if file_grads.dim() != 2 or file_grads.shape[0] != l:
            raise ValueError(
                f"{self.name}.worker_message: expected the ({l}, d) gradients of files "
                f"{self.assignment.files_of[worker]}, got shape {tuple(file_grads.shape)}"
            )
        return file_grads.to(torch.float32)

    def _attack_values(self, view: StepView) -> tuple[Tensor, Tensor | None]:
        """The simulator's attack call, as in :meth:`simulate`: ``(slots, values)`` with
        ``values[t]`` what every received Byzantine copy of file ``slots[t]`` sends (None: no
        attack this step)."""
        G = view.honest
        wo = self.workers_of
        is_byz = view.byzantine[wo]
        present = view.received[wo]
        byz_in = is_byz & present
        will_lose = byz_in.sum(1) >= self.majority
        no_majority = (~will_lose) & ((~is_byz & present).sum(1) < self.majority)
        honest_wins = ~will_lose & ~no_majority
        slots = torch.nonzero(byz_in.any(1)).flatten()
        if not slots.numel() or view.attack is None:
            return slots, None
        ctx = AttackContext(
            honest=G[honest_wins],
            own=G[slots],
            n=int(honest_wins.sum() + will_lose.sum()),
            num_byzantine=int(will_lose.sum()),
            rule=self.aggregator,
            generator=view.generator,
        )
        return slots, view.attack(ctx, slots)

    def byzantine_messages(self, view: StepView) -> dict[int, Tensor]:
        """What each Byzantine worker of ``view`` sends: ``{worker: (l, d)}``.

        The same vectors :meth:`simulate` places in the copy stacks (one attack call over the
        Byzantine slots; every Byzantine copy of a slot file sends that file's row, so colluders
        agree), so a Byzantine process that rebuilds the simulator's view of a step sends exactly
        what the simulated adversary would. Files of a Byzantine worker that are not slots (its
        copy is not received in ``view``) carry their honest gradient.
        """
        G = view.honest
        slots, values = self._attack_values(view)
        slot_of = torch.full((self.num_files,), -1, dtype=torch.long)
        slot_of[slots] = torch.arange(slots.numel())
        out: dict[int, Tensor] = {}
        for w in torch.nonzero(view.byzantine).flatten().tolist():
            files = torch.tensor(self.assignment.files_of[w], dtype=torch.long)
            rows = G[files].to(torch.float32).clone()
            if values is not None:
                s = slot_of[files]
                m = s >= 0
                rows[m] = values[s[m]].to(rows.dtype)
            out[w] = rows
        return out

    def server_aggregate(
        self,
        messages: Tensor,
        received: Tensor,
        *,
        step: int,
        byzantine: Tensor | None = None,
        **_: Any,
    ) -> tuple[Tensor, StepInfo]:
        """The server's step on real messages: vote every file over its received copies
        (:func:`~byzantium.decoding.vote.vote_messages` with ``vote_rtol``: honest replicas
        computed in different processes need not be bit-identical), then the aggregator over the
        files that reached a majority (or their copy median).

        ``messages``: ``(K, l, d)``, row ``w`` worker ``w``'s message (anything where
        ``received[w]`` is False); ``received``: ``(K,)`` bool. ``byzantine`` (instrumentation
        only, from the run's configuration) lets ``distorted_files`` count files whose winning
        copy is Byzantine and differs from the first received honest copy.
        """
        from ..decoding.vote import vote_messages

        K, l = self.num_workers, self.assignment.l
        if messages.dim() != 3 or messages.shape[:2] != (K, l):
            raise ValueError(
                f"{self.name}.server_aggregate: messages must be ({K}, {l}, d), got "
                f"{tuple(messages.shape)}"
            )
        received = received.to(torch.bool)
        out = self._vote_buffer(messages)
        res = vote_messages(messages, self.assignment, received, rtol=self.vote_rtol,
                            on_no_majority=self.on_no_majority, out=out)
        usable = res.ok if self.on_no_majority == "drop" else torch.ones_like(res.ok)
        if not bool(usable.any()):
            raise RuntimeError(
                f"{self.name}: step {step}: every file was dropped (no majority, or no copy "
                "arrived); nothing to aggregate"
            )
        grad = self.aggregator(res.values if bool(usable.all()) else res.values[usable])
        if grad.untyped_storage().data_ptr() == out.untyped_storage().data_ptr():
            grad = grad.clone()  # a rule that returned a view of an input row: the buffer is reused
        distorted = 0
        if byzantine is not None and bool(byzantine.any()):
            if getattr(self, "_slots", None) is None:
                self._slots = torch.as_tensor(self.assignment.copy_slots(), dtype=torch.long)
            slots = self._slots  # (files, r) rows of the flat (K*l, d) message stack
            is_byz = byzantine.to(torch.bool)[self.workers_of]
            honest = received[slots // l] & ~is_byz
            win_byz = is_byz.gather(1, res.winner.clamp(min=0).unsqueeze(1)).squeeze(1) & res.ok
            first_h = torch.argmax(honest.to(torch.int8), dim=1)
            flat = messages.reshape(K * l, -1)
            for i in torch.nonzero(usable & win_byz).flatten().tolist():  # the few files won
                h = int(slots[i, first_h[i]])
                distorted += int(not bool(honest[i].any()) or not torch.equal(res.values[i], flat[h]))
        info = StepInfo(
            distorted_files=distorted,
            dropped_files=int((~res.ok).sum()),
            received=int(received.sum()),
        )
        return grad, info

    def _vote_buffer(self, messages: Tensor) -> Tensor:
        """The ``(num_files, d)`` output of the server's vote, kept across steps: a fresh one
        costs a page fault per 4 KiB on every step (about 35 ms of the vote's 75 ms for 25 files
        at d = 1e6 here, ``benchmarks/decoding.py``)."""
        shape = (self.num_files, messages.shape[-1])
        buf = getattr(self, "_vote_out", None)
        if buf is None or buf.shape != shape or buf.dtype != messages.dtype or buf.device != messages.device:
            buf = self._vote_out = torch.empty(shape, dtype=messages.dtype, device=messages.device)
        return buf

    def check_live(self, alive: Tensor) -> str | None:
        """Why the scheme's guarantee is lost with only the workers in ``alive`` (``(K,)`` bool)
        left, or None. With ``r > 1`` every file must keep ``r' = (r+1)//2`` live copies (else it
        can never be decided); the aggregator must accept the number of decodable files."""
        live = alive.to(torch.bool)[self.workers_of].sum(1)  # live copies per file
        if self.r > 1:
            bad = torch.nonzero(live < self.majority).flatten().tolist()
            if bad:
                return (f"{self.name}: files {bad[:10]} keep fewer than r'={self.majority} of "
                        f"r={self.r} live copies, so no vote can decide them")
            n = self.num_files
        else:
            n = int((live > 0).sum())
        if n == 0:
            return f"{self.name}: no live worker left"
        try:
            self.aggregator.check(n)
        except ValueError as e:
            return f"{self.name}: {n} decodable files left: {e}"
        return None
