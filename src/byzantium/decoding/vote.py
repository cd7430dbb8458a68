r"""Majority vote per file over its ``r`` received copies (ByzShield §1.4, DETOX §2.1, DRACO §3.2).

A value wins a file when at least ``r' = (r + 1) // 2`` of the file's ``r`` copies agree with it
(``r`` odd, so at most one exact cluster can reach it). The authors' servers run Boyer-Moore with
bitwise ``array_equal`` and no verification pass (spec pitfall 1): honest replicas computed on
different machines are not bit-identical, and an unverified Boyer-Moore hands colluding Byzantines
files they hold only a minority of. We instead vote by **agreement within a tolerance**:

.. math:: x_a \sim x_b \iff \|x_a - x_b\|_2 \le \mathrm{rtol}\cdot\max(\|x_a\|, \|x_b\|) + \mathrm{atol},

with an exact fast path: a file whose present copies are all bitwise equal (and finite) is decided
by one comparison pass, which is the common case in simulation and with deterministic kernels.

**Non-transitivity.** ``~`` is not transitive (``a ~ b ~ c`` but not ``a ~ c``), so "clusters"
are not well defined. We use *maximum support*: every present copy's support is the number of
present copies it agrees with (itself included); the copy with the largest support wins (lowest
copy index on ties, i.e. the lowest worker id since copies are in ``workers_of`` order) iff its
support is ``>= r'``. The winner is always a received copy, never an average, so exactly
replicated honest gradients come out bit-exact. Guarantee: if fewer than ``r'`` copies are
Byzantine and the winner is Byzantine, it agrees with at least one honest copy, so it lies within
``rtol * norm + atol`` of an honest value -- the adversary's power is capped by the tolerance.

**Missing and malformed copies.** ``present`` masks out copies that never arrived (stragglers).
The threshold stays ``r'`` of the *nominal* ``r``: with two of three copies missing the lone copy
is not trusted. Copies holding NaN or Inf agree with nothing, themselves included (norms and
distances are accumulated in float64, so finite float32/float16 values never overflow them; huge
but finite colluding copies are legitimate values and win where they hold ``r'`` copies).

**No-majority policy** (``on_no_majority``): the file's status is ``no_majority`` and its value is

* ``"drop"`` (default): NaN, so a consumer that ignores ``ok`` fails loudly; schemes aggregate
  only ``values[ok]`` (see :meth:`VoteResult.kept`), i.e. the file is dropped from aggregation;
* ``"median"``: the coordinate-wise median of the file's present finite copies (lower middle for an
  even count); ``ok`` stays False so the caller can still tell;
* ``"raise"``: :class:`NoMajorityError` naming the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

__all__ = ["VoteError", "NoMajorityError", "VoteResult", "majority_vote", "gather_copies"]

NoMajorityPolicy = Literal["drop", "median", "raise"]

_INT_VIEW = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


class VoteError(ValueError):
    """Bad input to the vote (shapes, dtypes, even ``r``, unknown policy)."""


class NoMajorityError(VoteError):
    """Raised with ``on_no_majority="raise"`` when some file has no majority."""


@dataclass(frozen=True)
class VoteResult:
    """Outcome of :func:`majority_vote` (batched shapes; unbatched input drops the file axis).

    ``values``: ``(num_files, d)`` winning copy per file (policy value where no majority);
    ``ok``: ``(num_files,)`` bool, a majority was reached; ``agree``: ``(num_files,)`` int64,
    copies that agree with the chosen copy (its support; 0 if no copy is valid); ``winner``:
    ``(num_files,)`` int64 index of the chosen copy along the ``r`` axis (-1 where no majority);
    ``exact``: ``(num_files,)`` bool, decided by the bitwise fast path.
    """

    values: Tensor
    ok: Tensor
    agree: Tensor
    winner: Tensor
    exact: Tensor

    @property
    def status(self) -> tuple[str, ...] | str:
        if self.ok.dim() == 0:
            return "ok" if bool(self.ok) else "no_majority"
        return tuple("ok" if b else "no_majority" for b in self.ok.tolist())

    def kept(self) -> Tensor:
        """``values[ok]``: the voted gradients that reached a majority (the "drop" policy)."""
        if self.ok.dim() == 0:
            return self.values.unsqueeze(0)[self.ok.unsqueeze(0)]
        return self.values[self.ok]


def gather_copies(
    messages: Tensor, slots: "object", received: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Regroup worker messages into per-file copies for :func:`majority_vote`.

    ``messages``: ``(K, l, d)`` (worker ``w``'s ``l`` file gradients in ``files_of[w]`` order) or
    the flat ``(K*l, d)`` stack; ``slots``: ``Assignment.copy_slots()`` (``(num_files, r)``) or the
    assignment itself; ``received``: optional ``(K,)`` bool mask of workers whose message arrived.
    Returns ``(copies (num_files, r, d), present (num_files, r))``.
    """
    import numpy as np

    if hasattr(slots, "copy_slots"):
        a = slots
        slots = a.copy_slots()  # type: ignore[union-attr]
        l = a.l  # type: ignore[union-attr]
    else:
        l = None
    idx = torch.as_tensor(np.asarray(slots), dtype=torch.long, device=messages.device)
    flat = messages.reshape(-1, messages.shape[-1]) if messages.dim() == 3 else messages
    if flat.dim() != 2:
        raise VoteError(f"gather_copies: messages must be (K, l, d) or (K*l, d), got shape "
                        f"{tuple(messages.shape)}")
    copies = flat.index_select(0, idx.reshape(-1)).reshape(*idx.shape, flat.shape[-1])
    if received is None:
        present = torch.ones(idx.shape, dtype=torch.bool, device=messages.device)
    else:
        if l is None:
            l = messages.shape[1] if messages.dim() == 3 else None
        if l is None:
            raise VoteError("gather_copies: pass the assignment (or (K, l, d) messages) with "
                            "received")
        present = received.to(messages.device)[idx // l]
    return copies, present


def _check(copies: Tensor, present: Tensor | None, policy: str) -> tuple[Tensor, Tensor, bool]:
    if not isinstance(copies, Tensor):
        raise VoteError(f"majority_vote: copies must be a torch.Tensor, got {type(copies).__name__}")
    single = copies.dim() == 2
    if single:
        copies = copies.unsqueeze(0)
    if copies.dim() != 3:
        raise VoteError(f"majority_vote: copies must be (r, d) or (num_files, r, d), got shape "
                        f"{tuple(copies.shape)}")
    if not copies.is_floating_point():
        raise VoteError(f"majority_vote: copies must be floating point, got {copies.dtype}")
    F, r, _ = copies.shape
    if r < 1 or r % 2 == 0:
        raise VoteError(f"majority_vote: the number of copies r must be odd (strict majority), "
                        f"got r={r}")
    if policy not in ("drop", "median", "raise"):
        raise VoteError(f"majority_vote: on_no_majority must be 'drop', 'median' or 'raise', "
                        f"got {policy!r}")
    if present is None:
        present = torch.ones((F, r), dtype=torch.bool, device=copies.device)
    else:
        present = torch.as_tensor(present, device=copies.device)
        if single and present.dim() == 1:
            present = present.unsqueeze(0)
        if present.shape != (F, r) or present.dtype != torch.bool:
            raise VoteError(f"majority_vote: present must be a bool mask of shape "
                            f"{(F, r) if not single else (r,)}, got {present.dtype} "
                            f"{tuple(present.shape)}")
    return copies, present, single


def majority_vote(
    copies: Tensor,
    present: Tensor | None = None,
    *,
    rtol: float = 1e-5,
    atol: float = 0.0,
    on_no_majority: NoMajorityPolicy = "drop",
) -> VoteResult:
    """Vote each file's ``r`` copies (module docstring for the rule and the policies).

    ``copies``: ``(num_files, r, d)`` (or ``(r, d)`` for one file), copies in ``workers_of`` order;
    ``present``: bool ``(num_files, r)`` mask of copies that arrived (default all). Cost: one
    bitwise comparison pass plus one row sum for the exact path; files that fail it pay ``r`` norms
    and ``r (r - 1) / 2`` difference norms.
    """
    if rtol < 0 or atol < 0:
        raise VoteError(f"majority_vote: rtol and atol must be >= 0, got rtol={rtol}, atol={atol}")
    X, present, single = _check(copies, present, on_no_majority)
    F, r, d = X.shape
    rp = (r + 1) // 2
    dev = X.device
    n_present = present.sum(dim=1)
    ar = torch.arange(F, device=dev)

    # ---- exact fast path: every present copy bitwise equal to the first present one ----------
    ref_idx = torch.argmax(present.to(torch.int8), dim=1)  # first present copy (0 if none)
    all_present = bool(present.all())
    ref = X[:, 0] if all_present else X[ar, ref_idx]
    iv = _INT_VIEW[X.element_size()]
    Xi, refi = X.view(iv), ref.view(iv)
    same = torch.ones((F,), dtype=torch.bool, device=dev)
    for a in range(r):
        if all_present and a == 0:
            continue
        eq = (Xi[:, a] == refi).all(dim=1)
        same &= eq | ~present[:, a]
    # a finite row sum certifies that every entry is finite (NaN/Inf propagate; overflow of
    # finite huge values is conservatively treated as "not certified" and goes the slow way)
    finite_ref = torch.isfinite(ref.sum(dim=1, dtype=torch.float64))
    exact = same & finite_ref & (n_present > 0)

    winner = torch.where(exact, ref_idx, torch.full_like(ref_idx, -1))
    agree = torch.where(exact, n_present, torch.zeros_like(n_present))

    # ---- tolerance path for the rest -----------------------------------------------------------
    slow = torch.nonzero(~exact & (n_present > 0)).flatten()
    if slow.numel():
        Y = X.index_select(0, slow)  # (S, r, d)
        P = present.index_select(0, slow)
        norms = torch.linalg.vector_norm(Y, dim=2, dtype=torch.float64)  # (S, r)
        valid = P & torch.isfinite(norms)
        A = torch.diag_embed(valid)  # (S, r, r) bool, a copy agrees with itself iff valid
        for a in range(r):
            for b in range(a + 1, r):
                dist = torch.linalg.vector_norm(Y[:, a] - Y[:, b], dim=1, dtype=torch.float64)
                tol = rtol * torch.maximum(norms[:, a], norms[:, b]) + atol
                ok_ab = valid[:, a] & valid[:, b] & (dist <= tol)
                A[:, a, b] = ok_ab
                A[:, b, a] = ok_ab
        support = A.sum(dim=2)  # (S, r)
        best = torch.argmax(support, dim=1)  # first maximum: lowest copy index on ties
        best_support = support.gather(1, best.unsqueeze(1)).squeeze(1)
        winner[slow] = best
        agree[slow] = best_support

    ok = agree >= rp
    winner = torch.where(ok, winner, torch.full_like(winner, -1))
    values = X[ar, winner.clamp(min=0)]  # advanced indexing copies
    if not bool(ok.all()):
        bad = torch.nonzero(~ok).flatten()
        if on_no_majority == "raise":
            raise NoMajorityError(
                f"majority_vote: no value reached {rp} of {r} agreeing copies for files "
                f"{bad.tolist()[:20]}{'...' if bad.numel() > 20 else ''}"
            )
        if on_no_majority == "drop":
            values[bad] = float("nan")
        else:  # median of the present finite copies
            Z = X.index_select(0, bad)  # a copy
            norms = torch.linalg.vector_norm(Z, dim=2, dtype=torch.float64)
            usable = present.index_select(0, bad) & torch.isfinite(norms)
            Z[~usable] = float("nan")
            values[bad] = torch.nanmedian(Z, dim=1).values
    res = VoteResult(values, ok, agree, winner, exact & ok)
    if single:
        res = VoteResult(values[0], ok[0], agree[0], winner[0], (exact & ok)[0])
    return res
