"""gloo point-to-point transport: pair groups, receive threads, a latest-only parameter mailbox.

Measured behaviour of gloo this follows (shared/DESIGN.md, "Distributed runtime"):

* **Pair groups.** Right after ``init_process_group`` every rank creates one 2-rank group
  ``{0, w+1}`` per worker ``w``, in the same order (``new_group`` must be entered by every rank;
  its local-synchronisation variant hung here with non-members). A failure or timeout inside one
  pair group closes only that group's connection, so it evicts only that worker. No collective is
  ever used: a dead rank would break it for everyone.
* **Blocking receive threads.** ``Work.is_completed()`` stays False until ``wait()``, so the server
  cannot poll; it runs one thread per worker blocked in ``recv`` and feeding one queue. A killed
  worker makes its ``recv`` raise at once ("connection closed by peer").
* **Send is a rendezvous.** ``send`` returns only once the peer has posted the matching ``recv``
  (measured: a 1000-float send to a peer that posts its receive 2 s later returns after 2 s). The
  server therefore sends from one thread per worker, and only when that worker has answered its
  previous request: parameters go through a *latest-only mailbox* (one slot holding the newest
  version; a busy worker gets, when it is ready, the newest version, skipping the ones it missed;
  nothing queues). Every worker has at most one request outstanding, so a reply is matched to the
  step it answers without trusting its header.
* **Eviction is the server's decision.** gloo's own timeout also bounds group creation and would
  kill the connection of a worker that is merely waiting, so the pair groups get a long timeout
  (a backstop) and the server evicts a worker that leaves a request unanswered for
  ``evict_timeout`` seconds after its delivery (:meth:`ServerTransport.overdue`; a worker's first
  request may take ``connect_timeout``, its start-up). An evicted worker's threads are abandoned
  (daemon threads blocked in gloo); whatever it sends later is dropped.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from .frames import PARAMS, STOP, FrameError, frame_size, poison

__all__ = [
    "init_world",
    "Reply",
    "Lost",
    "ServerTransport",
    "WorkerChannel",
]


def init_world(
    rank: int, world_size: int, *, connect_timeout: float, gloo_timeout: float
) -> list[Any]:
    """Join the job (gloo, ``env://``: ``MASTER_ADDR``/``MASTER_PORT`` from the environment) and
    create the ``world_size - 1`` pair groups ``{0, w+1}`` in order; return them (index ``w``;
    a rank outside a pair gets ``GroupMember.NON_GROUP_MEMBER`` there)."""
    from .mesh import init_mesh

    mine = init_mesh(rank, world_size, [(0, w + 1) for w in range(world_size - 1)],
                     connect_timeout=connect_timeout, gloo_timeout=gloo_timeout)
    return [mine.get(w + 1 if rank == 0 else 0) if rank in (0, w + 1) else dist.GroupMember.NON_GROUP_MEMBER
            for w in range(world_size - 1)]


@dataclass
class Reply:
    """A frame from ``worker`` answering the request for step ``asked`` (None: no request was
    outstanding), received at ``time`` (``time.monotonic``)."""

    worker: int
    buf: torch.Tensor
    asked: int | None
    time: float


@dataclass
class Lost:
    """The connection to ``worker`` failed (``where``: "recv" or "send"): it crashed or closed."""

    worker: int
    where: str
    detail: str


@dataclass
class _State:
    alive: bool = True
    ready: bool = True
    outstanding: int | None = None
    sent_at: float = 0.0
    delivered_at: float | None = None
    requests: int = 0
    last_seq: int = -1
    stopped: bool = False


@dataclass
class _Box:
    seq: int
    step: int
    kind: int
    frame: torch.Tensor = field(repr=False)


class ServerTransport:
    """The server's side: per worker one sender and one receiver thread over its pair group.

    ``publish(step, frame)`` puts a parameter frame in the mailbox; each live worker gets it as
    soon as it has answered its previous request. ``get(timeout)`` returns the next
    :class:`Reply` / :class:`Lost` event (or None). ``stop()`` publishes a STOP frame.
    """

    def __init__(self, groups: list[Any], *, message_slots: int) -> None:
        self.K = len(groups)
        self.groups = groups
        self.message_size = frame_size(message_slots)
        self.events: queue.Queue = queue.Queue()
        self._cv = threading.Condition()
        self._state = [_State() for _ in range(self.K)]
        self._box: _Box | None = None
        self._seq = 0
        self._threads: list[threading.Thread] = []
        for w in range(self.K):
            for fn, name in ((self._sender, "send"), (self._receiver, "recv")):
                t = threading.Thread(target=fn, args=(w,), name=f"byz-{name}-{w}", daemon=True)
                self._threads.append(t)
                t.start()

    # ------------------------------------------------------------------ server API
    def publish(self, step: int, frame: torch.Tensor, kind: int = PARAMS) -> None:
        """Make ``frame`` (parameters of ``step``, or STOP) the newest version in the mailbox."""
        with self._cv:
            self._seq += 1
            self._box = _Box(self._seq, step, kind, frame)
            self._cv.notify_all()

    def stop(self, frame: torch.Tensor, step: int) -> None:
        self.publish(step, frame, kind=STOP)

    def get(self, timeout: float) -> Reply | Lost | None:
        try:
            return self.events.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def alive(self) -> torch.Tensor:
        with self._cv:
            return torch.tensor([s.alive for s in self._state], dtype=torch.bool)

    def outstanding(self, w: int) -> int | None:
        with self._cv:
            return self._state[w].outstanding

    def overdue(self, now: float, timeout: float, first_timeout: float | None = None) -> list[int]:
        """Live workers whose outstanding request is older than ``timeout`` seconds, counted from
        its delivery (``send`` returns once the worker posted its receive), or from the start of
        the send if it is still undelivered. A worker's first request may take ``first_timeout``
        (it covers the worker's start-up: loading data, building the model)."""
        out = []
        with self._cv:
            for w, s in enumerate(self._state):
                if not s.alive or s.outstanding is None:
                    continue
                limit = timeout
                if s.requests == 1 and first_timeout is not None:
                    limit = max(timeout, first_timeout)
                since = s.delivered_at if s.delivered_at is not None else s.sent_at
                if now - since > limit:
                    out.append(w)
        return out

    def evict(self, w: int) -> bool:
        """Stop talking to ``w`` (its threads are abandoned; later frames are dropped). Returns
        False if it was already gone."""
        with self._cv:
            was = self._state[w].alive
            self._state[w].alive = False
            self._cv.notify_all()
            return was

    def wait_stopped(self, timeout: float) -> list[int]:
        """Wait until every live worker was sent STOP (or ``timeout``); return those that were not."""
        end = time.monotonic() + timeout
        with self._cv:
            while True:
                left = [w for w, s in enumerate(self._state) if s.alive and not s.stopped]
                rest = end - time.monotonic()
                if not left or rest <= 0:
                    return left
                self._cv.wait(rest)

    # ------------------------------------------------------------------ threads
    def _lost(self, w: int, where: str, exc: BaseException) -> None:
        with self._cv:
            st = self._state[w]
            if not st.alive or st.stopped:
                return
            st.alive = False
            self._cv.notify_all()
        self.events.put(Lost(w, where, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"))

    def _sender(self, w: int) -> None:
        group = self.groups[w]
        while True:
            with self._cv:
                while True:
                    st, box = self._state[w], self._box
                    if not st.alive:
                        return
                    if box is not None and st.ready and box.seq > st.last_seq:
                        break
                    self._cv.wait()
                st.last_seq = box.seq
                if box.kind != STOP:
                    st.ready = False
                    st.outstanding = box.step
                    st.sent_at = time.monotonic()
                    st.delivered_at = None
                    st.requests += 1
            try:
                dist.send(box.frame, dst=w + 1, group=group)
            except Exception as e:  # noqa: BLE001 - any transport failure means the worker is gone
                self._lost(w, "send", e)
                return
            with self._cv:
                if self._state[w].outstanding == box.step and box.kind != STOP:
                    self._state[w].delivered_at = time.monotonic()
            if box.kind == STOP:
                with self._cv:
                    self._state[w].stopped = True
                    self._cv.notify_all()
                return

    def _receiver(self, w: int) -> None:
        group = self.groups[w]
        while True:
            buf = poison(torch.empty(self.message_size, dtype=torch.float32))
            try:
                dist.recv(buf, src=w + 1, group=group)
            except Exception as e:  # noqa: BLE001
                self._lost(w, "recv", e)
                return
            t = time.monotonic()
            with self._cv:
                st = self._state[w]
                if not st.alive:
                    continue  # evicted: drop
                asked = st.outstanding
                st.outstanding = None
                st.ready = True
                self._cv.notify_all()
            self.events.put(Reply(w, buf, asked, t))


class WorkerChannel:
    """A worker's side of its pair group: receive parameter frames, send message frames of
    exactly the agreed size (a longer frame would abort the server inside gloo)."""

    def __init__(self, group: Any, *, param_slots: int, message_slots: int) -> None:
        self.group = group
        self.param_size = frame_size(param_slots)
        self.message_size = frame_size(message_slots)

    def recv(self) -> torch.Tensor:
        buf = poison(torch.empty(self.param_size, dtype=torch.float32))
        dist.recv(buf, src=0, group=self.group)
        return buf

    def send(self, frame: torch.Tensor) -> None:
        if frame.dtype != torch.float32 or frame.dim() != 1 or frame.numel() != self.message_size:
            raise FrameError(
                f"WorkerChannel.send: a message frame must be {self.message_size} float32 slots, got "
                f"{frame.dtype} {tuple(frame.shape)}"
            )
        dist.send(frame, dst=0, group=self.group)

    def send_truncated(self, frame: torch.Tensor, keep: int) -> None:
        """Fault injection only: send the first ``keep`` slots of a valid frame (a short frame;
        the server detects it by its missing trailer). Never longer than the agreed size."""
        if not 0 < keep < self.message_size:
            raise FrameError(f"send_truncated: keep must lie in (0, {self.message_size}), got {keep}")
        dist.send(frame[:keep].contiguous(), dst=0, group=self.group)

