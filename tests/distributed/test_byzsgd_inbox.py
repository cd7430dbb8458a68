"""The ByzSGD inbox on a fake mesh (no processes): validation, one frame per sender per step,
late / future / flooding frames, quorums and their failure."""

from __future__ import annotations

import queue

import pytest
import torch

from byzantium.runtime.distributed.byzsgd.inbox import EventLog, Inbox, QuorumError
from byzantium.runtime.distributed.frames import GATHER, MESSAGE, PARAMS, encode_frame
from byzantium.runtime.distributed.mesh import Arrival, Lost

SESSION, D = 77, 4


class FakeMesh:
    def __init__(self) -> None:
        self.q: queue.Queue = queue.Queue()

    def get(self, timeout: float):
        try:
            return self.q.get(timeout=min(timeout, 0.01))
        except queue.Empty:
            return None

    def put(self, peer: int, kind: int, step: int, value: float, *, sender: int | None = None) -> None:
        fr = encode_frame(kind, step, peer if sender is None else sender, torch.full((D,), value),
                          capacity=D, session=SESSION, aux=value)
        self.q.put(Arrival(peer, fr, 0.0))


def make(**kw):
    mesh = FakeMesh()
    inbox = Inbox(mesh, session=SESSION, slots=D, kinds_from=lambda p: (MESSAGE, GATHER),
                  window=kw.pop("window", 5), events=EventLog(None, "test", lambda m: None), **kw)
    return mesh, inbox


def drain(mesh, inbox) -> None:
    while not mesh.q.empty():
        inbox.pump(0.0)


def test_first_frame_per_sender_counts_and_quorum_is_first_arrivals() -> None:
    mesh, inbox = make()
    for peer, v in ((3, 1.0), (5, 2.0), (3, 9.0), (4, 3.0), (6, 4.0)):
        mesh.put(peer, MESSAGE, 0, v)
    got = inbox.collect(MESSAGE, 0, 3, [3, 4, 5, 6], timeout=1.0, what="gradients")
    assert list(got) == [3, 5, 4]  # arrival order, the duplicate from 3 ignored
    assert float(got[3].payload[0]) == 1.0 and got[5].aux == 2.0
    assert inbox.rejections == {"duplicate": 1}


def test_late_future_wrong_kind_and_forged_frames_are_rejected() -> None:
    mesh, inbox = make(window=5)
    inbox.set_floor(MESSAGE, 10)
    mesh.put(3, MESSAGE, 9, 1.0)        # late
    mesh.put(3, MESSAGE, 16, 1.0)       # beyond the window
    mesh.put(3, PARAMS, 10, 1.0)        # a kind this peer may not send
    mesh.put(3, MESSAGE, 10, 1.0, sender=4)  # claims another sender
    mesh.put(3, MESSAGE, 12, 1.0)       # future, buffered
    drain(mesh, inbox)
    assert inbox.rejections == {"late": 1, "step": 1, "malformed": 1, "sender": 1}
    assert list(inbox.have(MESSAGE, 12)) == [3]
    inbox.set_floor(MESSAGE, 13)
    assert inbox.have(MESSAGE, 12) == {}


def test_a_flooding_sender_keeps_bounded_memory() -> None:
    mesh, inbox = make(window=10**9, per_sender=8)
    for step in range(100):
        mesh.put(3, MESSAGE, step, float(step))
    mesh.put(4, MESSAGE, 0, 0.5)
    drain(mesh, inbox)
    held = [k for k, v in inbox.store.items() if 3 in v]
    assert len(held) == 8 and min(s for _, s in held) == 92  # its newest 8 kept
    assert list(inbox.have(MESSAGE, 0)) == [4]  # other senders untouched


def test_unreachable_quorum_raises_and_non_strict_returns_what_came() -> None:
    mesh, inbox = make()
    mesh.put(3, MESSAGE, 0, 1.0)
    mesh.q.put(Lost(4, "recv", "connection closed"))
    mesh.q.put(Lost(5, "recv", "connection closed"))
    with pytest.raises(QuorumError, match=r"1 received and 1 live sender\(s\) left cannot reach the quorum q=3"):
        inbox.collect(MESSAGE, 0, 3, [3, 4, 5, 6], timeout=1.0, what="gradients")
    got = inbox.collect(MESSAGE, 0, 3, [3, 4, 5, 6], timeout=0.05, what="gradients", strict=False)
    assert list(got) == [3]
    with pytest.raises(QuorumError, match="within 0.05 s"):
        inbox.collect(MESSAGE, 0, 2, [3, 6], timeout=0.05, what="gradients")


def test_sync_collection_waits_for_n_minus_f_then_a_deadline() -> None:
    mesh, inbox = make()
    for peer in (3, 4, 5):
        mesh.put(peer, MESSAGE, 0, 1.0)
    at, got = inbox.collect_sync(MESSAGE, 0, [3, 4, 5, 6], 1, first_timeout=1.0, rest=0.05, what="gradients")
    assert at == 0 and sorted(got) == [3, 4, 5]  # 6 stayed silent past the deadline: faulty for this step
    mesh2, inbox2 = make()
    mesh2.put(3, MESSAGE, 0, 1.0)
    with pytest.raises(QuorumError, match="only 1 of the quorum q=3 arrived within 0.05 s"):
        inbox2.collect_sync(MESSAGE, 0, [3, 4, 5, 6], 1, first_timeout=0.05, rest=1.0, what="gradients")


def test_a_party_that_fell_behind_joins_the_newest_quorum() -> None:
    """The peers went on without this party: its outboxes kept only their newest frames, so step
    1 never completes here. collect_newest settles on the newest step with a quorum (2 of
    senders [3, 4, 5, 6]); a lone sender far ahead (possibly Byzantine) moves nobody."""
    mesh, inbox = make(window=10)
    mesh.put(3, MESSAGE, 1, 1.0)
    for peer in (3, 4, 5):
        mesh.put(peer, MESSAGE, 4, 4.0)
    mesh.put(4, MESSAGE, 6, 6.0)
    mesh.put(6, MESSAGE, 9, 9.0)
    at, got = inbox.collect_newest(MESSAGE, 1, 2, [3, 4, 5, 6], timeout=1.0, what="gradients")
    assert at == 4 and list(got) == [3, 4] and float(got[4].payload[0]) == 4.0
    assert inbox.newest_ready(MESSAGE, 5, 2, [3, 4, 5, 6]) is None
    # the quorum at the requested step itself is taken when nothing newer has one
    mesh2, inbox2 = make()
    for peer in (3, 4):
        mesh2.put(peer, MESSAGE, 2, 2.0)
    assert inbox2.collect_newest(MESSAGE, 2, 2, [3, 4, 5], timeout=1.0, what="gradients")[0] == 2
    # the synchronous collection settles on the newest step, then waits for the rest of it
    mesh3, inbox3 = make()
    for peer in (3, 4, 5):
        mesh3.put(peer, MESSAGE, 3, 3.0)
    at, got = inbox3.collect_sync(MESSAGE, 0, [3, 4, 5, 6], 1, first_timeout=1.0, rest=0.05,
                                  what="gradients", newest=True)
    assert at == 3 and sorted(got) == [3, 4, 5]
    with pytest.raises(QuorumError, match=r"step 5: gradients: only 0 of the quorum q=2 arrived within 0.05 s"):
        inbox.collect_newest(MESSAGE, 5, 2, [3, 4, 5, 6], timeout=0.05, what="gradients")


def test_feasible_f_keeps_f_while_mda_allows_it() -> None:
    from byzantium.runtime.distributed.byzsgd.layout import feasible_f

    assert [feasible_f(2, m) for m in range(1, 8)] == [0, 0, 1, 1, 2, 2, 2]
