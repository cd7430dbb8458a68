"""Fixed-size float32 frames: the only thing that travels between the server and the workers.

A frame is one float32 tensor of ``HEADER + capacity + TRAILER`` slots::

    slot 0  magic        int32 0x42595A31 ("BYZ1")
    slot 1  kind         int32 PARAMS (server -> worker), MESSAGE (worker -> server), STOP;
                         ByzSGD also uses GATHER (server -> server model) and REQUEST (a worker's
                         fallback pull in the synchronous variant; no payload)
    slot 2  step         int32 the step whose parameters / gradient this is
    slot 3  sender       int32 rank of the sender (0 = server, w + 1 = worker w)
    slot 4  length       int32 payload slots in use (the rest of the capacity is zero)
    slot 5  aux          float32 (the worker's training loss on its files; metrics only)
    slot 6-7             reserved (0)
    payload              ``capacity`` float32 slots; complex128 messages travel as their raw
                         bytes (4 float32 slots per entry) and are checked as float64
    trailer stamp        int32 CRC-32 of (session, kind, step, sender, length), never 0

Integers are stored as raw int32 bits (``Tensor.view``), so they are exact at any size.

Why this shape (measured with gloo, see shared/DESIGN.md): a frame longer than the receiver's
posted buffer aborts the receiving process inside gloo, so every sender emits exactly the agreed
size (:func:`encode_frame` cannot produce anything else); a shorter frame is accepted silently and
leaves the tail of the buffer untouched, so the receiver writes :data:`POISON` into the trailer
before every receive and a frame whose trailer is still :data:`POISON` is *short*. The stamp binds
the header to the run's ``session`` number, so a replayed frame of an older step (a *stale*
stamp) or a header edited after stamping (a *forged* stamp) is rejected before the payload is
read. Nothing is ever unpickled: the receiver only reads numbers at fixed offsets.

:func:`validate_frame` applies the checks in a fixed order and raises :class:`FrameRejected` with
one of :data:`REASONS`; the server counts rejections by reason.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "MAGIC",
    "HEADER",
    "TRAILER",
    "PARAMS",
    "MESSAGE",
    "STOP",
    "GATHER",
    "REQUEST",
    "POISON",
    "REASONS",
    "FrameError",
    "FrameRejected",
    "Frame",
    "frame_size",
    "wire_numel",
    "to_wire",
    "from_wire",
    "stamp",
    "encode_frame",
    "poison",
    "read_header",
    "validate_frame",
]

MAGIC = 0x42595A31
HEADER = 8
TRAILER = 1
PARAMS, MESSAGE, STOP, GATHER, REQUEST = 1, 2, 3, 4, 5
KINDS = (PARAMS, MESSAGE, STOP, GATHER, REQUEST)
POISON = 0

REASONS = (
    "short",        # fewer slots than the agreed frame size arrived (trailer not written)
    "malformed",    # wrong magic or unknown kind: not one of our frames
    "stamp",        # trailer stamp does not match the header (forged or corrupted)
    "sender",       # header names another sender than the channel it came on
    "stale",        # header step older than the step the server asked for (replayed / old)
    "step",         # header step newer than asked for
    "length",       # declared payload length differs from the scheme's message length
    "nonfinite",    # NaN or Inf in the payload
    "late",         # a reply to a step the server has already closed (straggler), discarded
    "unsolicited",  # a frame while no request was outstanding
    "duplicate",    # a second frame from one sender for the same (step, kind): the first counts
)

_SLOT_MAGIC, _SLOT_KIND, _SLOT_STEP, _SLOT_SENDER, _SLOT_LENGTH, _SLOT_AUX = range(6)


class FrameError(ValueError):
    """A frame cannot be built (payload too long, wrong dtype, bad field)."""


class FrameRejected(Exception):
    """A received frame failed validation; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:  # pragma: no cover - programming error
            raise ValueError(f"FrameRejected: unknown reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Frame:
    """A validated frame: header fields and the payload slots in use (a view of the buffer)."""

    kind: int
    step: int
    sender: int
    length: int
    aux: float
    payload: Tensor


def frame_size(capacity: int) -> int:
    """Slots of a frame with ``capacity`` payload slots."""
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
        raise FrameError(f"frame_size: capacity must be an int >= 0, got {capacity!r}")
    return HEADER + capacity + TRAILER


def wire_numel(shape: tuple[int, ...], dtype: torch.dtype) -> int:
    """float32 slots that a message of ``shape`` and ``dtype`` occupies on the wire."""
    n = 1
    for s in shape:
        n *= int(s)
    size = torch.empty((), dtype=dtype).element_size()
    if size % 4:
        raise FrameError(f"wire_numel: dtype {dtype} is not a whole number of float32 slots")
    return n * size // 4


def to_wire(message: Tensor) -> Tensor:
    """A message as a flat float32 tensor of raw bytes (float32 as is; float64 / complex128 as
    2 / 4 slots per entry)."""
    m = message.detach().to("cpu").contiguous()
    if m.dtype == torch.float32:
        return m.reshape(-1)
    if m.dtype in (torch.float64, torch.complex128, torch.complex64):
        return m.reshape(-1).view(torch.float32)
    raise FrameError(f"to_wire: messages must be float32, float64 or complex, got {m.dtype}")


def from_wire(payload: Tensor, dtype: torch.dtype, shape: tuple[int, ...]) -> Tensor:
    """Inverse of :func:`to_wire` (a copy, so the receive buffer can be reused)."""
    flat = payload.contiguous()
    if dtype != torch.float32:
        flat = flat.clone().view(dtype)
    return flat.reshape(shape).clone()


def stamp(session: int, kind: int, step: int, sender: int, length: int) -> int:
    """CRC-32 of the header fields and the run's session number, as a nonzero int32."""
    raw = struct.pack("<qiiii", int(session), int(kind), int(step), int(sender), int(length))
    return (zlib.crc32(raw) & 0x7FFFFFFF) or 1


def _ints(frame: Tensor) -> Tensor:
    return frame.view(torch.int32)


def encode_frame(
    kind: int,
    step: int,
    sender: int,
    payload: Tensor,
    *,
    capacity: int,
    session: int,
    aux: float = 0.0,
) -> Tensor:
    """Build a frame of exactly :func:`frame_size` ``(capacity)`` slots around ``payload`` (a flat
    float32 tensor of at most ``capacity`` slots; see :func:`to_wire`)."""
    if kind not in KINDS:
        raise FrameError(f"encode_frame: kind must be one of {KINDS}, got {kind!r}")
    if payload.dtype != torch.float32 or payload.dim() != 1:
        raise FrameError(
            f"encode_frame: payload must be a flat float32 tensor (see to_wire), got "
            f"{payload.dtype} {tuple(payload.shape)}"
        )
    n = payload.numel()
    if n > capacity:
        raise FrameError(f"encode_frame: payload has {n} slots, more than capacity={capacity}")
    frame = torch.zeros(frame_size(capacity), dtype=torch.float32)
    ints = _ints(frame)
    ints[_SLOT_MAGIC] = MAGIC
    ints[_SLOT_KIND] = kind
    ints[_SLOT_STEP] = step
    ints[_SLOT_SENDER] = sender
    ints[_SLOT_LENGTH] = n
    frame[_SLOT_AUX] = float(aux)
    frame[HEADER: HEADER + n] = payload.to("cpu")
    ints[-1] = stamp(session, kind, step, sender, n)
    return frame


def poison(buf: Tensor) -> Tensor:
    """Mark ``buf``'s trailer as not written (call before every receive into ``buf``)."""
    _ints(buf)[-1] = POISON
    return buf


def read_header(buf: Tensor) -> tuple[int, int, int, int, int, float]:
    """``(magic, kind, step, sender, length, aux)`` as stored (unvalidated)."""
    ints = _ints(buf)
    return (int(ints[_SLOT_MAGIC]), int(ints[_SLOT_KIND]), int(ints[_SLOT_STEP]),
            int(ints[_SLOT_SENDER]), int(ints[_SLOT_LENGTH]), float(buf[_SLOT_AUX]))


def validate_frame(
    buf: Tensor,
    *,
    session: int,
    kinds: tuple[int, ...],
    sender: int,
    step: int | None,
    length: int | None,
    dtype: torch.dtype = torch.float32,
) -> Frame:
    """Check a received buffer, in this order: short, malformed, stamp, sender, step (stale /
    step), length, finiteness of the payload read as ``dtype``. Raise :class:`FrameRejected` with
    the first failing reason, else return the :class:`Frame`.

    ``step=None`` / ``length=None`` skip those checks (STOP and REQUEST frames have no payload).
    """
    capacity = buf.numel() - HEADER - TRAILER
    if capacity < 0:
        raise FrameRejected("short", f"buffer of {buf.numel()} slots holds no frame")
    ints = _ints(buf)
    trailer = int(ints[-1])
    if trailer == POISON:
        raise FrameRejected("short", f"trailer not written: fewer than {buf.numel()} slots arrived")
    magic, kind, fstep, fsender, flen, aux = read_header(buf)
    if magic != MAGIC or kind not in kinds:
        raise FrameRejected("malformed", f"magic {magic:#x}, kind {kind} (expected kinds {kinds})")
    if trailer != stamp(session, kind, fstep, fsender, flen):
        raise FrameRejected("stamp", f"stamp {trailer} does not match header step={fstep}, "
                                     f"sender={fsender}, length={flen}")
    if fsender != sender:
        raise FrameRejected("sender", f"header sender {fsender} on the channel of {sender}")
    if step is not None and kind != STOP and fstep != step:
        if fstep < step:
            raise FrameRejected("stale", f"header step {fstep} < expected step {step}")
        raise FrameRejected("step", f"header step {fstep} > expected step {step}")
    if kind in (STOP, REQUEST):
        return Frame(kind, fstep, fsender, 0, aux, buf[HEADER:HEADER])
    if length is not None and flen != length:
        raise FrameRejected("length", f"declared length {flen} != expected {length}")
    if not 0 <= flen <= capacity:
        raise FrameRejected("length", f"declared length {flen} outside [0, {capacity}]")
    payload = buf[HEADER: HEADER + flen]
    check = payload
    if dtype in (torch.float64, torch.complex128):
        if flen % 2:
            raise FrameRejected("length", f"length {flen} is not a whole number of {dtype} entries")
        check = payload.clone().view(torch.float64)
    if not bool(torch.isfinite(check).all()):
        bad = int((~torch.isfinite(check)).sum())
        raise FrameRejected("nonfinite", f"{bad} NaN/Inf entries in the payload")
    return Frame(kind, fstep, fsender, flen, aux, payload)
