"""A mesh of gloo pair channels between peers (ByzSGD: servers <-> workers, servers <-> servers).

The single-server runtime (:mod:`.transport`) is a star: rank 0 talks to every worker. ByzSGD has no
centre: every server talks to every worker and to every other server, and each party proceeds on
the first quorum of messages. The same measured gloo behaviour applies (shared/DESIGN.md):

* **Pair groups.** Every rank creates the same 2-rank groups, in the same order, right after
  ``init_process_group`` (:func:`init_mesh`). A failure inside one pair group closes only that
  pair's connection: a killed server makes its peers' receives from it fail, nothing else.
* **Receives always posted.** One thread per peer blocks in ``recv`` and feeds one event queue, so
  a peer's ``send`` (a rendezvous in gloo) returns as soon as the frame is copied: nobody ever
  waits on a slow reader.
* **Latest-only outboxes.** One sender thread per peer sends the newest frame put in that peer's
  slot (:meth:`Mesh.send`); an older frame not yet sent is replaced (a frame of step ``t`` is
  useless once step ``t + 1``'s exists), so nothing queues behind a hung peer and the protocol
  loop never blocks on a send.
* Every frame has the fixed size ``frame_size(slots)`` in both directions of every pair (ByzSGD's
  models and gradients are both ``d`` floats), so a receive buffer always matches.

Counters: frames actually handed to gloo per peer and kind (:attr:`Mesh.sent`), which is what the
message benchmarks count; frames replaced in an outbox before they were picked up
(:attr:`Mesh.replaced`) and frames that never reached their peer because it was gone or the mesh
closed first (:attr:`Mesh.undelivered`, final after :meth:`Mesh.close`). Every frame given to
:meth:`Mesh.send` is exactly one of sent, replaced or undelivered.
"""

from __future__ import annotations

import datetime
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
import torch.distributed as dist

from .frames import frame_size, poison, read_header

__all__ = ["init_mesh", "open_mesh", "Arrival", "Lost", "Mesh"]


def init_mesh(
    rank: int,
    world_size: int,
    pairs: Iterable[tuple[int, int]],
    *,
    connect_timeout: float,
    gloo_timeout: float,
) -> dict[int, Any]:
    """Join the job (gloo, ``env://``) and create one 2-rank group per pair, in the given order
    (identical on every rank); return ``{peer: group}`` for the pairs containing ``rank``."""
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise RuntimeError(f"init_mesh: environment variable {var} is not set (env:// rendezvous)")
    if not 0 <= rank < world_size or world_size < 2:
        raise ValueError(f"init_mesh: need 0 <= rank < world_size and world_size >= 2, got "
                         f"rank={rank}, world_size={world_size}")
    dist.init_process_group(
        "gloo", init_method="env://", rank=rank, world_size=world_size,
        timeout=datetime.timedelta(seconds=connect_timeout),
    )
    tout = datetime.timedelta(seconds=gloo_timeout)
    mine: dict[int, Any] = {}
    for a, b in pairs:
        g = dist.new_group([a, b], timeout=tout)
        if rank in (a, b):
            mine[b if rank == a else a] = g
    return mine


def open_mesh(
    rank: int,
    world_size: int,
    pairs: Iterable[tuple[int, int]],
    *,
    slots: int,
    connect_timeout: float,
    gloo_timeout: float,
) -> "Mesh":
    """:func:`init_mesh`, this rank's :class:`Mesh`, then a barrier of every rank: nobody sends
    before every peer's receivers run. Without it a rank still setting up while the others start
    gets the newest of their frames only (latest-only outboxes) and begins behind them.
    Call it once the slow set-up (data, model) is done."""
    groups = init_mesh(rank, world_size, pairs, connect_timeout=connect_timeout, gloo_timeout=gloo_timeout)
    mesh = Mesh(rank, groups, slots=slots)
    dist.barrier()
    return mesh


@dataclass
class Arrival:
    """A frame from ``peer`` (unvalidated buffer), received at ``time`` (``time.monotonic``)."""

    peer: int
    buf: torch.Tensor
    time: float


@dataclass
class Lost:
    """The connection to ``peer`` failed (``where``: "recv" or "send"): it crashed or closed."""

    peer: int
    where: str
    detail: str


@dataclass
class _Slot:
    seq: int = 0
    sent_seq: int = 0
    taken_seq: int = 0  # the version the sender thread is sending (or has sent)
    failed: bool = False  # the send of taken_seq raised (counted as undelivered then)
    frame: torch.Tensor | None = field(default=None, repr=False)
    kind: int = 0


class Mesh:
    """This rank's side of its pair channels: ``send(peer, frame)``, ``get(timeout)``, counters.

    ``groups``: ``{peer: group}`` from :func:`init_mesh`; ``slots``: payload slots of every frame.
    """

    def __init__(self, rank: int, groups: dict[int, Any], *, slots: int) -> None:
        self.rank = rank
        self.groups = dict(groups)
        self.size = frame_size(slots)
        self.events: queue.Queue = queue.Queue()
        self._cv = threading.Condition()
        self._slots = {p: _Slot() for p in self.groups}
        self._alive = {p: True for p in self.groups}
        self._closing = False
        self.sent: dict[int, dict[int, int]] = {p: {} for p in self.groups}
        self.replaced = 0
        self.undelivered = 0
        for p in self.groups:
            for fn, name in ((self._sender, "send"), (self._receiver, "recv")):
                threading.Thread(target=fn, args=(p,), name=f"mesh-{name}-{p}", daemon=True).start()

    # ------------------------------------------------------------------ API
    @property
    def peers(self) -> list[int]:
        return sorted(self.groups)

    def alive(self, peer: int) -> bool:
        with self._cv:
            return self._alive[peer]

    def send(self, peer: int, frame: torch.Tensor) -> None:
        """Put ``frame`` in ``peer``'s latest-only outbox (a frame not yet sent is replaced)."""
        if frame.dtype != torch.float32 or frame.dim() != 1 or frame.numel() != self.size:
            raise ValueError(f"Mesh.send: a frame must be {self.size} float32 slots, got "
                             f"{frame.dtype} {tuple(frame.shape)}")
        kind = int(read_header(frame)[1])
        with self._cv:
            slot = self._slots[peer]
            if not self._alive[peer] or self._closing:
                self.undelivered += 1
                return
            if slot.seq > slot.taken_seq:  # the previous version was never picked up
                self.replaced += 1
            slot.seq += 1
            slot.frame, slot.kind = frame, kind
            self._cv.notify_all()

    def get(self, timeout: float) -> Arrival | Lost | None:
        """The next event, or None after ``timeout`` seconds."""
        try:
            return self.events.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def flush(self, timeout: float) -> bool:
        """Wait until every live peer's outbox is sent (or ``timeout``); True if all were."""
        end = time.monotonic() + timeout
        with self._cv:
            while True:
                busy = [p for p, s in self._slots.items() if self._alive[p] and s.seq > s.sent_seq]
                rest = end - time.monotonic()
                if not busy:
                    return True
                if rest <= 0:
                    return False
                self._cv.wait(rest)

    def drop(self, peer: int) -> None:
        """Stop talking to ``peer`` (its later frames are ignored by the caller)."""
        with self._cv:
            self._alive[peer] = False
            self._cv.notify_all()

    def close(self) -> None:
        """Stop every sender thread (receivers stay blocked in gloo; the process exits hard).
        Frames still waiting in an outbox, or still in a send, count as undelivered."""
        with self._cv:
            if self._closing:
                return
            self._closing = True
            for slot in self._slots.values():
                if slot.seq > slot.taken_seq:
                    self.undelivered += 1
                if slot.taken_seq > slot.sent_seq and not slot.failed:
                    self.undelivered += 1
            self._cv.notify_all()

    def sent_by_kind(self) -> dict[int, int]:
        """Frames handed to gloo, summed over peers, by frame kind."""
        with self._cv:
            out: dict[int, int] = {}
            for per in self.sent.values():
                for k, v in per.items():
                    out[k] = out.get(k, 0) + v
            return out

    # ------------------------------------------------------------------ threads
    def _lost(self, peer: int, where: str, exc: BaseException) -> None:
        with self._cv:
            if not self._alive[peer] or self._closing:
                return
            self._alive[peer] = False
            self._cv.notify_all()
        self.events.put(Lost(peer, where, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"))

    def _sender(self, peer: int) -> None:
        group = self.groups[peer]
        while True:
            with self._cv:
                while True:
                    slot = self._slots[peer]
                    if not self._alive[peer] or self._closing:
                        return
                    if slot.seq > slot.sent_seq:
                        break
                    self._cv.wait()
                frame, kind, seq = slot.frame, slot.kind, slot.seq
                slot.taken_seq = seq
            assert frame is not None
            try:
                dist.send(frame, dst=peer, group=group)
            except Exception as e:  # noqa: BLE001 - any transport failure means the peer is gone
                with self._cv:
                    slot.failed = True
                    if not self._closing:
                        self.undelivered += 1
                self._lost(peer, "send", e)
                return
            with self._cv:
                slot.sent_seq = max(slot.sent_seq, seq)
                if not self._closing:  # else close() already counted it as undelivered
                    per = self.sent[peer]
                    per[kind] = per.get(kind, 0) + 1
                self._cv.notify_all()

    def _receiver(self, peer: int) -> None:
        group = self.groups[peer]
        while True:
            buf = poison(torch.empty(self.size, dtype=torch.float32))
            try:
                dist.recv(buf, src=peer, group=group)
            except Exception as e:  # noqa: BLE001
                self._lost(peer, "recv", e)
                return
            with self._cv:
                if not self._alive[peer]:
                    continue
            self.events.put(Arrival(peer, buf, time.monotonic()))
