"""The fault registry: every frame fault makes a frame of the valid frame's physical size that
the server rejects for the reason it names (or, ``garbage``, accepts as a finite value)."""

from __future__ import annotations

import pytest
import torch

from byzantium.runtime.distributed.faults import FAULTS, fault_kinds, faulty_frame
from byzantium.runtime.distributed.frames import MESSAGE, FrameRejected, validate_frame, wire_numel
from byzantium.runtime.distributed.options import FAULT_KINDS, OptionsError, SERVER_FAULT_KINDS, parse_fault

EXPECTED = {"length": "length", "stale": "stale", "stamp": "stamp", "sender": "sender",
            "nan": "nonfinite", "inf": "nonfinite"}


@pytest.mark.parametrize("kind", sorted(EXPECTED) + ["garbage", "short", "kill"])
def test_frame_faults_are_rejected_for_their_reason(kind) -> None:
    msg = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    slots = wire_numel((3, 4), torch.float32)
    kw = dict(step=5, rank=2, slots=slots, session=77, aux=0.5)
    valid = faulty_frame(None, msg, **kw)
    frame = faulty_frame(kind, msg, **kw)
    assert frame.numel() == valid.numel()

    def check():
        return validate_frame(frame, session=77, kinds=(MESSAGE,), sender=2, step=5, length=slots)

    if kind in EXPECTED:
        with pytest.raises(FrameRejected) as e:
            check()
        assert e.value.reason == EXPECTED[kind]
    else:  # garbage passes validation; short and process faults send the valid frame
        fr = check()
        want = torch.full((12,), 1e30) if kind == "garbage" else msg.flatten()
        assert torch.equal(fr.payload[:12], want)
    assert FAULTS[kind].truncate == (kind == "short")


def test_roles_and_parsing_come_from_the_registry() -> None:
    assert FAULT_KINDS == fault_kinds("worker") and len(FAULT_KINDS) == 11
    assert SERVER_FAULT_KINDS == ("kill", "stop", "freeze")
    assert parse_fault("ps2:freeze@3").role == "server"
    with pytest.raises(OptionsError, match="server fault kind must be one of kill, stop, freeze"):
        parse_fault("ps1:nan@3")
    with pytest.raises(OptionsError, match="worker fault kind must be one of short, length"):
        parse_fault("1:melt@3")
