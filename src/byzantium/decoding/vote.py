r"""Majority vote per file over its ``r`` received copies (ByzShield §1.4, DETOX §2.1, DRACO §3.2).

A value wins a file when at least ``r' = (r + 1) // 2`` of the file's ``r`` copies agree with it
(``r`` odd, so at most one exact cluster can reach it). The authors' servers run Boyer-Moore with
bitwise ``array_equal`` and no verification pass (spec pitfall 1): honest replicas computed on
different machines are not bit-identical, and an unverified Boyer-Moore hands colluding Byzantines
files they hold only a minority of. We instead vote by **agreement within a tolerance**:

.. math:: x_a \sim x_b \iff \|x_a - x_b\|_2 \le \mathrm{rtol}\cdot\max(\|x_a\|, \|x_b\|) + \mathrm{atol},

with an exact fast path: a file whose present copies are all bitwise equal (and finite) is decided
by one comparison pass, which is the common case in simulation and with deterministic kernels.

**Cost.** :func:`vote_messages` reads the workers' message stack in place (no
``(num_files, r, d)`` copy). On CPU the exact pass goes block by block (each block of a file's
reference copy is read once: copied to the output, compared bitwise with the other copies, summed
to certify finiteness), spread over threads by file; two copies stored in the same row (a
simulator pointing every honest replica at one gradient) are equal without being read. Files
that fail it take the tolerance path: one norm per distinct copy and, per pair, a squared distance
accumulated block by block that stops as soon as it exceeds the tolerance, so a Byzantine copy
far from the honest value costs one block. Other devices use the same logic with vectorised
torch operations.

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
is not trusted. Copies holding NaN or Inf agree with nothing, themselves included. Norms are
recomputed in float64 where the input precision overflows, so huge but finite colluding copies are
legitimate values and win where they hold ``r'`` copies; a distance that overflows means the two
copies are far apart.

**No-majority policy** (``on_no_majority``): the file's status is ``no_majority`` and its value is

* ``"drop"`` (default): NaN, so a consumer that ignores ``ok`` fails loudly; schemes aggregate
  only ``values[ok]`` (see :meth:`VoteResult.kept`), i.e. the file is dropped from aggregation;
* ``"median"``: the coordinate-wise median of the file's present finite copies (lower middle for an
  even count); ``ok`` stays False so the caller can still tell;
* ``"raise"``: :class:`NoMajorityError` naming the files.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "VoteError",
    "NoMajorityError",
    "VoteResult",
    "majority_vote",
    "vote_messages",
    "gather_copies",
]

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


def _slots_of(slots: Any) -> tuple[np.ndarray, int | None]:
    if hasattr(slots, "copy_slots"):
        return slots.copy_slots(), int(slots.l)
    return np.asarray(slots), None


def gather_copies(
    messages: Tensor, slots: Any, received: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Regroup worker messages into per-file copies ``(num_files, r, d)`` for
    :func:`majority_vote` (a copy of the data; :func:`vote_messages` votes without one).

    ``messages``: ``(K, l, d)`` (worker ``w``'s ``l`` file gradients in ``files_of[w]`` order) or
    the flat ``(K*l, d)`` stack; ``slots``: the :class:`~byzantium.assignments.Assignment` or its
    ``copy_slots()``; ``received``: optional ``(K,)`` bool mask of workers whose message arrived.
    Returns ``(copies, present)``.
    """
    flat, idx, present = _layout("gather_copies", messages, slots, received)
    copies = flat.index_select(0, idx.reshape(-1)).reshape(*idx.shape, flat.shape[-1])
    return copies, present


def _layout(fn: str, messages: Tensor, slots: Any, received: Tensor | None
            ) -> tuple[Tensor, Tensor, Tensor]:
    if not isinstance(messages, Tensor) or messages.dim() not in (2, 3):
        raise VoteError(f"{fn}: messages must be a (K, l, d) or (K*l, d) tensor, got "
                        f"{tuple(messages.shape) if isinstance(messages, Tensor) else type(messages).__name__}")
    sl, l = _slots_of(slots)
    if messages.dim() == 3:
        l = messages.shape[1] if l is None else l
        if messages.shape[1] != l:
            raise VoteError(f"{fn}: messages hold {messages.shape[1]} files per worker, the "
                            f"assignment's load is l={l}")
    flat = messages.reshape(-1, messages.shape[-1])
    if sl.ndim != 2 or (sl.size and (sl.min() < 0 or sl.max() >= flat.shape[0])):
        raise VoteError(f"{fn}: slots must be a (num_files, r) array of rows of the "
                        f"{flat.shape[0]}-row message stack")
    idx = torch.as_tensor(sl, dtype=torch.long, device=messages.device)
    if received is None:
        present = torch.ones(idx.shape, dtype=torch.bool, device=messages.device)
    else:
        if l is None:
            raise VoteError(f"{fn}: pass the assignment (or (K, l, d) messages) with received")
        received = torch.as_tensor(received, device=messages.device)
        if received.dtype != torch.bool or received.shape != (flat.shape[0] // l,):
            raise VoteError(f"{fn}: received must be a bool mask of shape "
                            f"({flat.shape[0] // l},), got {received.dtype} "
                            f"{tuple(received.shape)}")
        present = received[idx // l]
    return flat, idx, present


def _check_params(fn: str, r: int, policy: str, rtol: float, atol: float) -> None:
    if r < 1 or r % 2 == 0:
        raise VoteError(f"{fn}: the number of copies r must be odd (strict majority), got r={r}")
    if policy not in ("drop", "median", "raise"):
        raise VoteError(f"{fn}: on_no_majority must be 'drop', 'median' or 'raise', "
                        f"got {policy!r}")
    if rtol < 0 or atol < 0:
        raise VoteError(f"{fn}: rtol and atol must be >= 0, got rtol={rtol}, atol={atol}")


def majority_vote(
    copies: Tensor,
    present: Tensor | None = None,
    *,
    rtol: float = 1e-5,
    atol: float = 0.0,
    on_no_majority: NoMajorityPolicy = "drop",
    out: Tensor | None = None,
) -> VoteResult:
    """Vote each file's ``r`` copies (module docstring for the rule and the policies).

    ``copies``: ``(num_files, r, d)`` (or ``(r, d)`` for one file), copies in ``workers_of`` order;
    ``present``: bool ``(num_files, r)`` mask of copies that arrived (default all); ``out``:
    optional contiguous ``(num_files, d)`` tensor (same dtype and device) that receives the
    voted values -- a server reusing it across steps saves a fresh allocation per step.
    """
    fn = "majority_vote"
    if not isinstance(copies, Tensor):
        raise VoteError(f"{fn}: copies must be a torch.Tensor, got {type(copies).__name__}")
    single = copies.dim() == 2
    X = copies.unsqueeze(0) if single else copies
    if X.dim() != 3:
        raise VoteError(f"{fn}: copies must be (r, d) or (num_files, r, d), got shape "
                        f"{tuple(copies.shape)}")
    F, r, d = X.shape
    _check_params(fn, r, on_no_majority, rtol, atol)
    if present is None:
        present = torch.ones((F, r), dtype=torch.bool, device=X.device)
    else:
        present = torch.as_tensor(present, device=X.device)
        if single and present.dim() == 1:
            present = present.unsqueeze(0)
        if present.shape != (F, r) or present.dtype != torch.bool:
            raise VoteError(f"{fn}: present must be a bool mask of shape "
                            f"{(F, r) if not single else (r,)}, got {present.dtype} "
                            f"{tuple(present.shape)}")
    if X.stride(2) == 1 and X.stride(0) == r * X.stride(1) and X.stride(1) == d:
        flat = X.reshape(F * r, d)  # a view: no copy
    elif X.stride(1) == 0 and X.stride(2) == 1:  # replicas expanded from one (F, d) stack
        flat = X[:, 0]
        idx = torch.arange(F, device=X.device)[:, None].expand(F, r)
        res = _vote(fn, flat, idx, present, rtol, atol, on_no_majority, out)
        return _squeeze(res) if single else res
    else:
        flat = X.reshape(F * r, d)
    idx = torch.arange(F * r, device=X.device).reshape(F, r)
    res = _vote(fn, flat, idx, present, rtol, atol, on_no_majority, out)
    return _squeeze(res) if single else res


def vote_messages(
    messages: Tensor,
    slots: Any,
    received: Tensor | None = None,
    *,
    rtol: float = 1e-5,
    atol: float = 0.0,
    on_no_majority: NoMajorityPolicy = "drop",
    out: Tensor | None = None,
) -> VoteResult:
    """:func:`majority_vote` straight from the workers' messages, without materialising the
    ``(num_files, r, d)`` copies (arguments as in :func:`gather_copies`; ``out`` as in
    :func:`majority_vote`). The usual server call:
    ``vote_messages(stack_of_K_messages, assignment, received_mask)``."""
    flat, idx, present = _layout("vote_messages", messages, slots, received)
    if not flat.is_floating_point():
        raise VoteError(f"vote_messages: messages must be floating point, got {flat.dtype}")
    _check_params("vote_messages", idx.shape[1], on_no_majority, rtol, atol)
    return _vote("vote_messages", flat, idx, present, rtol, atol, on_no_majority, out)


def vote_rows(
    rows: Tensor,
    slots: Tensor,
    present: Tensor,
    *,
    rtol: float = 1e-5,
    atol: float = 0.0,
    on_no_majority: NoMajorityPolicy = "drop",
    out: Tensor | None = None,
) -> VoteResult:
    """The vote over copies given as rows of one stack: copy ``c`` of file ``i`` is
    ``rows[slots[i, c]]`` and arrived iff ``present[i, c]``. Copies that share a row are equal
    without being read (the simulator points every honest replica of a file at its one honest
    gradient); :func:`vote_messages` is this with the rows of the workers' messages."""
    fn = "vote_rows"
    if not isinstance(rows, Tensor) or rows.dim() != 2:
        raise VoteError(f"{fn}: rows must be a (N, d) tensor")
    slots = torch.as_tensor(slots, dtype=torch.long, device=rows.device)
    if slots.dim() != 2 or (slots.numel() and (int(slots.min()) < 0 or int(slots.max()) >= rows.shape[0])):
        raise VoteError(f"{fn}: slots must be a (num_files, r) tensor of rows of the "
                        f"{rows.shape[0]}-row stack")
    if present.shape != slots.shape or present.dtype != torch.bool:
        raise VoteError(f"{fn}: present must be a bool mask of shape {tuple(slots.shape)}, got "
                        f"{present.dtype} {tuple(present.shape)}")
    _check_params(fn, slots.shape[1], on_no_majority, rtol, atol)
    return _vote(fn, rows, slots, present.to(rows.device), rtol, atol, on_no_majority, out)


def _squeeze(res: VoteResult) -> VoteResult:
    return VoteResult(res.values[0], res.ok[0], res.agree[0], res.winner[0], res.exact[0])


_CHUNK = 131072  # elements per block of the CPU exact pass (fits in L2 with the other copies)
_SMALL = 1 << 20  # contested copies (elements) up to which the tolerance path gathers them and
# runs vectorised (per-file Python costs more than the gather there; above, block by block)


def _threads() -> int:
    return max(1, min(8, torch.get_num_threads(), os.cpu_count() or 1))


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=_threads())


def _exact_pass_cpu(flat: Tensor, idx_l: list, pres_l: list, ref_l: list,
                    out_t: Tensor | None = None) -> tuple[Tensor, list[bool], list[bool]]:
    """Fused exact pass over CPU rows, block by block so each block of the reference copy is read
    from memory once: copy it to the output, compare every other present copy with it bitwise
    (skipping copies that are the very same row, as when a simulator points replicas at one
    honest gradient), and sum it to certify finiteness. Returns ``(values (F, d), same,
    finite)``; files with no present copy get ``same = False``."""
    fl = flat.detach().numpy()
    bits = fl.view(np.dtype(f"i{fl.itemsize}"))
    F, d = len(idx_l), fl.shape[1]
    out = np.empty((F, d), dtype=fl.dtype) if out_t is None else out_t.detach().numpy()
    outb = out.view(bits.dtype)
    same, finite = [False] * F, [False] * F

    def work(files: range) -> None:
        with np.errstate(over="ignore", invalid="ignore"):
            for i in files:
                ref = ref_l[i]
                rrow = idx_l[i][ref]
                if not pres_l[i][ref]:
                    outb[i] = bits[rrow]
                    continue
                others = [row for c, row in enumerate(idx_l[i]) if pres_l[i][c] and row != rrow]
                ok, total = True, 0.0
                for lo in range(0, d, _CHUNK):
                    rb = bits[rrow, lo: lo + _CHUNK]
                    outb[i, lo: lo + _CHUNK] = rb
                    if ok:
                        for row in others:
                            if not np.array_equal(bits[row, lo: lo + _CHUNK], rb):
                                ok = False
                                break
                    total += float(out[i, lo: lo + _CHUNK].sum())
                same[i], finite[i] = ok, bool(np.isfinite(total))

    nt = min(_threads(), F) if F * d >= (1 << 20) else 1
    if nt <= 1:
        work(range(F))
    else:  # numpy releases the GIL inside the block operations: split the files over threads
        edges = np.linspace(0, F, nt + 1).astype(int)
        list(_pool().map(work, [range(a, b) for a, b in zip(edges[:-1], edges[1:])]))
    return (torch.from_numpy(out) if out_t is None else out_t), same, finite


def _exact_pass_cpu_shared(flat: Tensor, idx: Tensor, present: Tensor, ref_idx: Tensor,
                           idx_l: list, pres_l: list, ref_l: list, out_t: Tensor | None
                           ) -> tuple[Tensor, list[bool], list[bool]]:
    """:func:`_exact_pass_cpu` with a vectorised shortcut for files whose present copies all
    point at one row (a simulator's honest replicas): equal without a comparison, so one
    gather of those rows and one finiteness sum decide them all; only the other files take the
    block-by-block comparison."""
    F = idx.shape[0]
    ref_rows = idx[torch.arange(F), ref_idx]
    shared = ((idx == ref_rows.unsqueeze(1)) | ~present).all(1) & present.any(1)
    if not bool(shared.any()):
        return _exact_pass_cpu(flat, idx_l, pres_l, ref_l, out_t)
    values = (flat.index_select(0, ref_rows) if out_t is None
              else torch.index_select(flat, 0, ref_rows, out=out_t))
    finite_t = torch.isfinite(values.sum(dim=1))
    same = shared.tolist()
    finite = (finite_t & shared).tolist()
    rest = torch.nonzero(~shared).flatten().tolist()
    if rest:
        sub_vals, sub_same, sub_fin = _exact_pass_cpu(
            flat, [idx_l[i] for i in rest], [pres_l[i] for i in rest], [ref_l[i] for i in rest])
        values[rest] = sub_vals
        for j, i in enumerate(rest):
            same[i], finite[i] = sub_same[j], sub_fin[j]
    return values, same, finite


def _rows(flat: Tensor, rows: Tensor) -> Tensor:
    """``flat[rows]`` as a new tensor (numpy's ``take`` on CPU: faster than ``index_select``)."""
    if flat.device.type == "cpu" and flat.dtype in (torch.float16, torch.float32, torch.float64):
        return torch.from_numpy(np.take(flat.detach().numpy(), rows.numpy(), axis=0))
    return flat.index_select(0, rows)


def _norms(Y: Tensor) -> Tensor:
    """Euclidean norms over the last axis as float64: computed in the input precision and
    recomputed in float64 only where that overflowed (or the row is not finite)."""
    n = torch.linalg.vector_norm(Y, dim=-1).double()
    bad = ~torch.isfinite(n)
    if bool(bad.any()):
        n[bad] = torch.linalg.vector_norm(Y[bad].double(), dim=-1)
    return n


def _agreement(Y: Tensor, P: Tensor, rtol: float, atol: float) -> Tensor:
    """``(S, r, r)`` agreement matrix of the copies ``Y`` ``(S, r, d)`` (vectorised; any device)."""
    r = Y.shape[1]
    norms = _norms(Y)  # (S, r) float64
    valid = P & torch.isfinite(norms)
    A = torch.diag_embed(valid)  # a copy agrees with itself iff it is valid
    for a in range(r):
        for b in range(a + 1, r):
            # in the input precision (an overflow to Inf only means "far apart")
            dist = torch.linalg.vector_norm(Y[:, a] - Y[:, b], dim=1).double()
            tol = rtol * torch.maximum(norms[:, a], norms[:, b]) + atol
            ok_ab = valid[:, a] & valid[:, b] & (dist <= tol)
            A[:, a, b] = ok_ab
            A[:, b, a] = ok_ab
    return A


def _rows_equal(x: np.ndarray, y: np.ndarray) -> bool:
    """Bitwise equality of two 1-D integer views, block by block with an early exit."""
    for lo in range(0, len(x), _CHUNK):
        if not np.array_equal(x[lo: lo + _CHUNK], y[lo: lo + _CHUNK]):
            return False
    return True


def _agreement_cpu(flat: Tensor, rows: list, pres: list, rtol: float, atol: float) -> Tensor:
    """:func:`_agreement` on CPU rows of ``flat`` without copying them, with early exits.

    Per file, the present copies are first grouped into classes of bitwise-equal rows (the same
    row, or an early-exiting comparison); one norm per class certifies finiteness and sets the
    tolerance; copies of one class agree outright, and for two classes the squared distance is
    accumulated block by block and abandoned as soon as it exceeds the tolerance (a Byzantine
    copy far from the honest value is rejected after one block)."""
    fl = flat.detach().numpy()
    bits = fl.view(np.dtype(f"i{fl.itemsize}"))
    S, r = len(rows), len(rows[0])
    d = fl.shape[1]
    A = np.zeros((S, r, r), dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(S):
            reps: list[int] = []  # representative row of each class
            cls = [-1] * r
            for c in range(r):
                if not pres[i][c]:
                    continue
                row = rows[i][c]
                for k, rep in enumerate(reps):
                    if row == rep or _rows_equal(bits[row], bits[rep]):
                        cls[c] = k
                        break
                else:
                    cls[c] = len(reps)
                    reps.append(row)
            norms = []
            for rep in reps:
                x = fl[rep]
                n2 = float(np.dot(x, x))
                if not np.isfinite(n2):  # overflow in the input precision, or NaN/Inf
                    n2 = float(np.dot(x.astype(np.float64), x.astype(np.float64)))
                norms.append(np.sqrt(n2) if np.isfinite(n2) else float("nan"))
            n = len(reps)
            C = np.zeros((n, n), dtype=bool)  # class agreement
            for k in range(n):
                C[k, k] = np.isfinite(norms[k])
            for k in range(n):
                for m in range(k + 1, n):
                    if not (C[k, k] and C[m, m]):
                        continue
                    tol = rtol * max(norms[k], norms[m]) + atol
                    tol2, acc = tol * tol, 0.0
                    xa, xb = fl[reps[k]], fl[reps[m]]
                    for lo in range(0, d, _CHUNK):
                        diff = xa[lo: lo + _CHUNK] - xb[lo: lo + _CHUNK]
                        acc += float(np.dot(diff, diff))
                        if not acc <= tol2:  # also catches NaN/Inf from overflowing diffs
                            break
                    C[k, m] = C[m, k] = acc <= tol2
            for a in range(r):
                for b in range(r):
                    if cls[a] >= 0 and cls[b] >= 0:
                        A[i, a, b] = C[cls[a], cls[b]]
    return torch.from_numpy(A)


def _vote(fn: str, flat: Tensor, idx: Tensor, present: Tensor, rtol: float, atol: float,
          policy: str, out: Tensor | None = None) -> VoteResult:
    """Vote over copies ``flat[idx[i, c]]`` of file ``i`` (``flat``: ``(N, d)``)."""
    if not flat.is_floating_point():
        raise VoteError(f"{fn}: copies must be floating point, got {flat.dtype}")
    F, r = idx.shape
    if out is not None and (out.shape != (F, flat.shape[1]) or out.dtype != flat.dtype
                            or out.device != flat.device or not out.is_contiguous()):
        raise VoteError(f"{fn}: out must be a contiguous {flat.dtype} tensor of shape "
                        f"{(F, flat.shape[1])} on {flat.device}, got {out.dtype} "
                        f"{tuple(out.shape)} on {out.device}")
    rp = (r + 1) // 2
    dev = flat.device
    n_present = present.sum(dim=1)
    ref_idx = torch.argmax(present.to(torch.int8), dim=1)  # first present copy (0 if none)

    # ---- exact fast path: every present copy bitwise equal to the first present one --------
    idx_l, pres_l, ref_l = idx.tolist(), present.tolist(), ref_idx.tolist()
    numpy_ok = (dev.type == "cpu" and flat.stride(1) == 1
                and flat.dtype in (torch.float16, torch.float32, torch.float64))
    if numpy_ok:
        values, same, finite = _exact_pass_cpu_shared(flat, idx, present, ref_idx, idx_l, pres_l,
                                                      ref_l, out)
    else:  # other devices: early-exiting torch.equal on views of the message rows
        bits = flat.view(_INT_VIEW[flat.element_size()])
        same = [
            pres_l[i][ref_l[i]] and all(
                not pres_l[i][c] or idx_l[i][c] == idx_l[i][ref_l[i]]
                or torch.equal(bits[idx_l[i][c]], bits[idx_l[i][ref_l[i]]])
                for c in range(r))
            for i in range(F)
        ]
        rows = idx[torch.arange(F, device=dev), ref_idx]
        values = (flat.index_select(0, rows) if out is None
                  else torch.index_select(flat, 0, rows, out=out))
        # a finite row sum certifies that every entry is finite (NaN/Inf propagate); a float32
        # overflow of huge finite values only sends the file to the tolerance path
        finite = torch.isfinite(values.sum(dim=1)).tolist()
    exact = torch.tensor([a and b for a, b in zip(same, finite)], dtype=torch.bool, device=dev)
    winner = torch.where(exact, ref_idx, torch.full_like(ref_idx, -1))
    agree = torch.where(exact, n_present, torch.zeros_like(n_present))

    # ---- tolerance path for the rest -----------------------------------------------------
    slow = torch.nonzero(~exact & (n_present > 0)).flatten()
    if slow.numel():
        sidx = idx.index_select(0, slow)
        P = present.index_select(0, slow)
        if numpy_ok and sidx.numel() * flat.shape[1] > _SMALL:
            A = _agreement_cpu(flat, sidx.tolist(), P.tolist(), rtol, atol)
        else:
            A = _agreement(_rows(flat, sidx.reshape(-1)).reshape(len(slow), r, -1), P, rtol,
                           atol)
        support = A.sum(dim=2)  # (S, r)
        best = torch.argmax(support, dim=1)  # first maximum: lowest copy index on ties
        winner[slow] = best
        agree[slow] = support.gather(1, best.unsqueeze(1)).squeeze(1)
        moved = best != ref_idx[slow]  # values already hold each file's reference copy
        if bool(moved.any()):
            sl = slow[moved]
            values[sl] = _rows(flat, sidx[moved, best[moved]])

    ok = agree >= rp
    winner = torch.where(ok, winner, torch.full_like(winner, -1))
    if not bool(ok.all()):
        bad = torch.nonzero(~ok).flatten()
        if policy == "raise":
            raise NoMajorityError(
                f"{fn}: no value reached {rp} of {r} agreeing copies for files "
                f"{bad.tolist()[:20]}{'...' if bad.numel() > 20 else ''}"
            )
        if policy == "drop":
            values[bad] = float("nan")
        else:  # median of the present finite copies
            bidx = idx.index_select(0, bad)
            Z = _rows(flat, bidx.reshape(-1)).reshape(len(bad), r, -1)
            norms = _norms(Z)
            usable = present.index_select(0, bad) & torch.isfinite(norms)
            Z[~usable] = float("nan")
            values[bad] = torch.nanmedian(Z, dim=1).values
    return VoteResult(values, ok, agree, winner, exact & ok)
