"""The inbox of a ByzSGD rank: validated frames into per-(kind, step) quorums, and its event log.

The inbox applies the spec's rules for a real runtime (dstar_byzsgd.md §2.3, P14): every frame is
validated (:func:`..frames.validate_frame`: trailer, stamp, sender, length, finiteness) before it
is stored; at most one frame per sender per (kind, step) counts, the first (later ones are
``duplicate``); frames of steps already passed are dropped (``late``), frames of future steps are
buffered up to ``window`` steps ahead (further: ``step``), and at most ``per_sender`` of them per
sender (its oldest is dropped first), so a Byzantine peer flooding future steps costs bounded
memory; a party proceeds as soon as ``q``
distinct senders have answered, and raises :class:`QuorumError` when the senders still alive
cannot complete the quorum, or none came within the timeout. A party that fell behind
(:meth:`Inbox.collect_newest`) takes the newest step a quorum of its senders reached: its peers'
latest-only outboxes replaced the frames of the steps it missed.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Callable

import torch

from ...loop import StopRun
from ..frames import FrameRejected, validate_frame
from ..mesh import Arrival, Lost, Mesh

__all__ = ["Inbox", "QuorumError", "Received", "EventLog"]


class QuorumError(StopRun):
    """A ByzSGD party cannot gather the quorum it needs (too many peers dead or silent)."""


@dataclasses.dataclass
class Received:
    """A validated frame's payload (a copy) and its ``aux`` slot."""

    payload: torch.Tensor
    aux: float


class Inbox:
    """Validated frames by ``(kind, step)``, fed from a :class:`Mesh`.

    ``kinds_from(peer)`` gives the frame kinds a peer may send; ``on_frame(kind, step, peer,
    received)`` (optional) is called for every stored frame (the synchronous server answers
    REQUEST frames from it).
    """

    def __init__(self, mesh: Mesh, *, session: int, slots: int, kinds_from: Callable[[int], tuple[int, ...]],
                 window: int, events: "EventLog", on_frame: Callable[..., None] | None = None,
                 per_sender: int = 256) -> None:
        self.mesh, self.session, self.slots = mesh, session, slots
        self.kinds_from, self.window, self.log, self.on_frame = kinds_from, window, events, on_frame
        self.per_sender = per_sender
        self.store: dict[tuple[int, int], dict[int, Received]] = {}
        self.held: dict[int, set[tuple[int, int]]] = {}
        self.floor: dict[int, int] = {}
        self.lost: dict[int, str] = {}
        self.rejections: dict[str, int] = {}
        self.echo_lost = True  # off at the last step: peers that are done exit then

    def alive(self, peer: int) -> bool:
        return peer not in self.lost

    def set_floor(self, kind: int, step: int) -> None:
        """Frames of ``kind`` for steps ``< step`` are no longer wanted: drop them."""
        self.floor[kind] = max(step, self.floor.get(kind, 0))
        for key in [k for k in self.store if k[0] == kind and k[1] < self.floor[kind]]:
            for peer in self.store.pop(key):
                self.held.get(peer, set()).discard(key)

    def reject(self, step: int, peer: int, reason: str, detail: str) -> None:
        """Count a rejection; log it unless it is ``late`` (the protocol's normal case: every
        message beyond the first ``q`` of a step arrives after the quorum closed)."""
        self.rejections[reason] = self.rejections.get(reason, 0) + 1
        if reason != "late":
            self.log.write(step, "rejected", peer, reason, detail, echo=reason != "duplicate")

    def pump(self, timeout: float) -> bool:
        """Handle at most one event (waiting up to ``timeout``); False if none came."""
        ev = self.mesh.get(timeout)
        if ev is None:
            return False
        if isinstance(ev, Lost):
            if ev.peer not in self.lost:
                self.lost[ev.peer] = f"{ev.where}: {ev.detail}"
                self.log.write(min(self.floor.values(), default=0), "lost", ev.peer, detail=self.lost[ev.peer],
                               echo=self.echo_lost)
            return True
        assert isinstance(ev, Arrival)
        peer = ev.peer
        if peer in self.lost:
            return True
        try:
            fr = validate_frame(ev.buf, session=self.session, kinds=self.kinds_from(peer), sender=peer,
                                step=None, length=self.slots)
        except FrameRejected as e:
            self.reject(min(self.floor.values(), default=0), peer, e.reason, e.detail)
            return True
        floor = self.floor.get(fr.kind, 0)
        if fr.step < floor:
            self.reject(fr.step, peer, "late", f"kind {fr.kind} step {fr.step} < {floor}")
            return True
        if fr.step > floor + self.window:
            self.reject(fr.step, peer, "step", f"kind {fr.kind} step {fr.step} > {floor} + {self.window}")
            return True
        bucket = self.store.setdefault((fr.kind, fr.step), {})
        if peer in bucket:
            self.reject(fr.step, peer, "duplicate", f"kind {fr.kind} step {fr.step}")
            return True
        held = self.held.setdefault(peer, set())
        if len(held) >= self.per_sender:  # bounded buffer per sender: drop its oldest frame
            old = min(held, key=lambda k: (k[1], k[0]))
            held.discard(old)
            self.store.get(old, {}).pop(peer, None)
            self.reject(old[1], peer, "step", f"more than {self.per_sender} frames buffered from one sender")
        rec = Received(fr.payload.clone(), fr.aux)
        bucket[peer] = rec
        held.add((fr.kind, fr.step))
        if self.on_frame is not None:
            self.on_frame(fr.kind, fr.step, peer, rec)
        return True

    def have(self, kind: int, step: int) -> dict[int, Received]:
        return self.store.get((kind, step), {})

    def newest_ready(self, kind: int, step: int, q: int, senders: list[int]) -> int | None:
        """The newest step ``>= step`` for which ``q`` of ``senders`` delivered a ``kind`` frame."""
        want = set(senders)
        ready = [st for (k, st), got in self.store.items()
                 if k == kind and st >= step and len(got.keys() & want) >= q]
        return max(ready, default=None)

    def collect(self, kind: int, step: int, q: int, senders: list[int], *, timeout: float,
                what: str, strict: bool = True) -> dict[int, Received]:
        """Wait until ``q`` of ``senders`` delivered a valid ``kind`` frame for ``step`` and
        return those (``{sender: received}``, at most ``q``, first arrivals). ``strict=False``:
        after ``timeout`` (or once the live senders cannot complete ``q``) return whatever came
        instead of raising :class:`QuorumError`."""
        return self._wait(kind, step, q, senders, timeout=timeout, what=what, strict=strict, newest=False)[1]

    def collect_newest(self, kind: int, step: int, q: int, senders: list[int], *, timeout: float,
                       what: str) -> tuple[int, dict[int, Received]]:
        """As :meth:`collect`, but for the newest step ``>= step`` that ``q`` senders reached:
        ``(that step, its first q frames)``. A party that fell behind (its peers went on with the
        others' quorums, and its latest-only outboxes replaced the frames of the steps it missed)
        joins its peers' step instead of waiting for frames that will never come. ``q`` frames
        of one step include a correct sender's whenever ``q > f``, so Byzantine senders
        announcing future steps alone move nobody."""
        return self._wait(kind, step, q, senders, timeout=timeout, what=what, strict=True, newest=True)

    def _wait(self, kind: int, step: int, q: int, senders: list[int], *, timeout: float, what: str,
              strict: bool, newest: bool) -> tuple[int, dict[int, Received]]:
        t0 = time.monotonic()
        if newest:  # see everything already here first: a party catching up jumps straight to the newest
            for _ in range(100_000):
                if not self.pump(0.0):
                    break
        while True:
            at = self.newest_ready(kind, step, q, senders) if newest else None
            got = {p: r for p, r in self.have(kind, step if at is None else at).items() if p in senders}
            if len(got) >= q:
                first = list(got)[:q]
                return (step if at is None else at), {p: got[p] for p in first}
            pending = [p for p in senders if p not in got and self.alive(p)]
            if len(got) + len(pending) < q and not (newest and self._reachable(kind, step, q, senders)):
                if not strict:
                    return step, got
                raise QuorumError(
                    f"step {step}: {what}: {len(got)} received and {len(pending)} live sender(s) "
                    f"left cannot reach the quorum q={q} (lost: {sorted(self.lost)})")
            left = timeout - (time.monotonic() - t0)
            if left <= 0:
                if not strict:
                    return step, got
                raise QuorumError(
                    f"step {step}: {what}: only {len(got)} of the quorum q={q} arrived within "
                    f"{timeout:g} s (waiting on {pending})")
            self.pump(min(0.25, left))

    def _reachable(self, kind: int, step: int, q: int, senders: list[int]) -> bool:
        """Can some step ``>= step`` still get ``q`` frames (those stored, plus the live senders
        missing there)? A sender that finished and left may have delivered its last frames."""
        live = {p for p in senders if self.alive(p)}
        counts = [len(live) + sum(p in got and p not in live for p in senders)
                  for (k, st), got in self.store.items() if k == kind and st >= step]
        return max(counts, default=len(live)) >= q or len(live) >= q

    def collect_sync(self, kind: int, step: int, senders: list[int], f: int, *, first_timeout: float,
                     rest: float, what: str, newest: bool = False) -> tuple[int, dict[int, Received]]:
        """Synchronous variant: the first ``len(senders) - f`` frames (they may take
        ``first_timeout``: the others are still on a previous step, a gather, start-up; else
        :class:`QuorumError`), then the rest until ``rest`` seconds later; returns ``(step,
        frames)``. Whoever is still silent is faulty for this step. ``newest``: as
        :meth:`collect_newest`, the first phase may settle on a later step."""
        n = len(senders)
        if newest:
            step = self.collect_newest(kind, step, n - f, senders, timeout=first_timeout, what=what)[0]
        else:
            self.collect(kind, step, n - f, senders, timeout=first_timeout, what=what)
        return step, self.collect(kind, step, n, senders, timeout=rest, what=what, strict=False)


class EventLog:
    """``events.jsonl`` of one rank (rejections, lost peers, errors), echoed through ``say``."""

    def __init__(self, path: Path | None, who: str, say: Callable[[str], None], fresh: bool = True) -> None:
        self.path, self.who, self.say = path, who, say
        self.t0 = time.monotonic()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            if fresh or not path.exists():
                path.write_text("")

    def write(self, step: int, kind: str, peer: int | None = None, reason: str = "", detail: str = "",
              echo: bool = True) -> None:
        rec = {"step": step, "time": round(time.monotonic() - self.t0, 4), "event": kind, "peer": peer,
               "reason": reason, "detail": detail}
        if self.path is not None:
            with self.path.open("a") as fh:
                fh.write(json.dumps(rec) + "\n")
        if echo:
            who = f" rank {peer}" if peer is not None else ""
            self.say(f"{self.who}: event: step {step}:{who} {kind} {reason} {detail}".rstrip())
