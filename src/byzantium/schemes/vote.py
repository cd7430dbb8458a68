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

One decoder (:meth:`VoteScheme.decode`: the tolerance-based vote of
:func:`~byzantium.decoding.vote.vote_rows`, then the rule over the files that reached a majority)
serves both runtimes. The real server votes the rows of the workers' messages; the simulator
votes a stack of every file's honest gradient (computed once: all honest replicas of a file point
at that one row, which the vote reads once) and the Byzantine rows. What only an omniscient
observer can measure, the number of files whose decoded value is not the honest one, is counted
beside the decoder (:func:`distorted_files`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..aggregators import Aggregator, get
from ..assignments import Assignment, worst_case
from ..attacks import AttackContext
from ..decoding.vote import VoteResult, vote_rows
from .base import NothingToAggregate, StepInfo, StepView

__all__ = ["VoteScheme", "distorted_files"]


def distorted_files(res: VoteResult, usable: Tensor, candidates: Tensor, honest: Any) -> int:
    """Decoded inputs of the rule that are not the honest value (an observer's count: it needs
    to know which copies are honest). ``candidates``: ``(files,)`` bool, files that can differ
    (a Byzantine copy won, or no majority); ``honest(i)``: file ``i``'s honest value, or None
    when no honest copy arrived (then any usable decoded value counts as distorted)."""
    count = 0
    for i in torch.nonzero(usable & candidates).flatten().tolist():
        h = honest(i)
        count += int(h is None or not torch.equal(res.values[i], h))
    return count


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
        """The simulator's step: the same decoder as the real server's, on a stack of every
        file's honest gradient followed by the Byzantine rows (one per attacked file, what every
        received Byzantine copy of that file sends); each copy points at its row."""
        G = view.honest
        F, wo = self.num_files, self.workers_of
        present = view.received[wo]
        byz_in = view.byzantine[wo] & present  # (files, r): received Byzantine copies
        slots, values = self._attack_values(view)
        copy_rows = torch.arange(F).unsqueeze(1).expand(F, self.r)
        rows = G
        if values is not None:
            rows = torch.cat([G, values.to(G.dtype)])
            slot_of = torch.full((F,), -1, dtype=torch.long)
            slot_of[slots] = torch.arange(slots.numel())
            byz_row = (F + slot_of).unsqueeze(1).expand(F, self.r)
            copy_rows = torch.where(byz_in & (slot_of >= 0).unsqueeze(1), byz_row, copy_rows)
        res = self._vote(rows, copy_rows, present)
        usable = self._usable(res)
        grad = self._aggregate(res, usable, view.step)
        contested = ~present.all(1) | byz_in.any(1)
        info = StepInfo(
            distorted_files=distorted_files(res, usable, contested, lambda i: G[i]),
            dropped_files=int((~res.ok).sum()),
            received=int(view.received.sum()),
        )
        return grad, info

    # ------------------------------------------------------------------ the decoder
    def _vote(self, rows: Tensor, copy_rows: Tensor, present: Tensor) -> VoteResult:
        """Vote every file over its present copies ``rows[copy_rows[i, c]]``, into the buffer
        kept across steps."""
        return vote_rows(rows, copy_rows, present, rtol=self.vote_rtol,
                         on_no_majority=self.on_no_majority, out=self._vote_buffer(rows))

    def _usable(self, res: VoteResult) -> Tensor:
        """Files the rule aggregates: those with a majority (or all, with the median policy)."""
        return res.ok if self.on_no_majority == "drop" else torch.ones_like(res.ok)

    def _aggregate(self, res: VoteResult, usable: Tensor, step: int) -> Tensor:
        """The rule over the usable decoded files (an error when none is left)."""
        if not bool(usable.any()):
            raise NothingToAggregate(
                f"{self.name}: step {step}: every file was dropped (no majority, or no copy "
                "arrived); nothing to aggregate"
            )
        out = res.values
        grad = self.aggregator(out if bool(usable.all()) else out[usable])
        if grad.untyped_storage().data_ptr() == out.untyped_storage().data_ptr():
            grad = grad.clone()  # a rule that returned a view of an input row: the buffer is reused
        return grad

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
        """The server's step on real messages: the decoder (:meth:`_vote`: every file voted
        over its received copies with ``vote_rtol``, since honest replicas computed in different
        processes need not be bit-identical), then the aggregator over the files that reached a
        majority (or their copy median).

        ``messages``: ``(K, l, d)``, row ``w`` worker ``w``'s message (anything where
        ``received[w]`` is False); ``received``: ``(K,)`` bool. ``byzantine`` (instrumentation
        only, from the run's configuration) lets ``distorted_files`` count files whose decoded
        value is not the first received honest copy.
        """
        K, l = self.num_workers, self.assignment.l
        if messages.dim() != 3 or messages.shape[:2] != (K, l):
            raise ValueError(
                f"{self.name}.server_aggregate: messages must be ({K}, {l}, d), got "
                f"{tuple(messages.shape)}"
            )
        received = received.to(torch.bool)
        if getattr(self, "_slots", None) is None:
            self._slots = torch.as_tensor(self.assignment.copy_slots(), dtype=torch.long)
        slots = self._slots  # (files, r) rows of the flat (K*l, d) message stack
        flat = messages.reshape(K * l, -1)
        res = self._vote(flat, slots, received[slots // l])
        usable = self._usable(res)
        grad = self._aggregate(res, usable, step)
        distorted = 0
        if byzantine is not None and bool(byzantine.any()):
            is_byz = byzantine.to(torch.bool)[self.workers_of]
            honest = received[slots // l] & ~is_byz
            win_byz = is_byz.gather(1, res.winner.clamp(min=0).unsqueeze(1)).squeeze(1) & res.ok
            first_h = torch.argmax(honest.to(torch.int8), dim=1)

            def honest_value(i: int) -> Tensor | None:
                return flat[int(slots[i, first_h[i]])] if bool(honest[i].any()) else None

            distorted = distorted_files(res, usable, win_byz | ~res.ok, honest_value)
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
