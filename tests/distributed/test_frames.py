"""Frames: layout, round trips, and one rejection per reason (no processes)."""

from __future__ import annotations

import argparse

import pytest
import torch

from byzantium.runtime.distributed.cli import _options, _runtime_flags
from byzantium.runtime.distributed.frames import (
    HEADER,
    MESSAGE,
    PARAMS,
    POISON,
    REASONS,
    STOP,
    TRAILER,
    FrameError,
    FrameRejected,
    encode_frame,
    frame_size,
    from_wire,
    poison,
    read_header,
    stamp,
    to_wire,
    validate_frame,
    wire_numel,
)
from byzantium.runtime.distributed.options import OptionsError, RuntimeOptions, parse_fault

S = 123456789


def _check(buf, **kw):
    args = dict(session=S, kinds=(MESSAGE,), sender=3, step=7, length=5)
    args.update(kw)
    return validate_frame(buf, **args)


def _reason(buf, **kw) -> str:
    with pytest.raises(FrameRejected) as e:
        _check(buf, **kw)
    return e.value.reason


def test_layout_and_round_trip() -> None:
    x = torch.tensor([1.5, -2.0, 3.25, 0.0, 1e-30])
    f = encode_frame(MESSAGE, 7, 3, x, capacity=8, session=S, aux=0.75)
    assert f.dtype == torch.float32 and f.numel() == frame_size(8) == HEADER + 8 + TRAILER
    magic, kind, step, sender, length, aux = read_header(f)
    assert (magic, kind, step, sender, length, aux) == (0x42595A31, MESSAGE, 7, 3, 5, 0.75)
    assert int(f.view(torch.int32)[-1]) == stamp(S, MESSAGE, 7, 3, 5) != POISON
    fr = _check(f, length=5)
    assert torch.equal(fr.payload, x) and fr.step == 7 and fr.sender == 3
    assert torch.equal(f[HEADER + 5: HEADER + 8], torch.zeros(3))  # unused capacity is zero


def test_large_integers_are_exact() -> None:
    f = encode_frame(PARAMS, 2**31 - 5, 0, torch.ones(2), capacity=2, session=S)
    assert read_header(f)[2] == 2**31 - 5


def test_complex128_travels_as_raw_bytes() -> None:
    y = torch.randn(6, dtype=torch.complex128)
    w = to_wire(y)
    assert w.dtype == torch.float32 and w.numel() == wire_numel((6,), torch.complex128) == 24
    f = encode_frame(MESSAGE, 7, 3, w, capacity=24, session=S)
    fr = _check(f, length=24, dtype=torch.complex128)
    assert torch.equal(from_wire(fr.payload, torch.complex128, (6,)), y)  # bit for bit


def test_encode_refuses_what_it_cannot_send_exactly() -> None:
    with pytest.raises(FrameError, match="capacity"):
        encode_frame(MESSAGE, 0, 1, torch.ones(9), capacity=8, session=S)
    with pytest.raises(FrameError, match="float32"):
        encode_frame(MESSAGE, 0, 1, torch.ones(3, dtype=torch.float64), capacity=8, session=S)
    with pytest.raises(FrameError, match="kind"):
        encode_frame(9, 0, 1, torch.ones(3), capacity=8, session=S)


def _good() -> torch.Tensor:
    return encode_frame(MESSAGE, 7, 3, torch.arange(5.0), capacity=5, session=S)


def test_short_frame_detected_by_its_trailer() -> None:
    buf = poison(torch.full((frame_size(5),), 9.0))
    good = _good()
    buf[: good.numel() // 2] = good[: good.numel() // 2]  # what gloo leaves after a short send
    assert _reason(buf) == "short"


def test_each_rejection_reason() -> None:
    bad = _good()
    bad.view(torch.int32)[0] = 0x1234
    assert _reason(bad) == "malformed"
    assert _reason(encode_frame(STOP, 7, 3, torch.zeros(0), capacity=5, session=S)) == "malformed"
    forged = _good()
    forged.view(torch.int32)[2] = 8  # step edited after stamping
    assert _reason(forged, step=8) == "stamp"
    other_session = encode_frame(MESSAGE, 7, 3, torch.arange(5.0), capacity=5, session=S + 1)
    assert _reason(other_session) == "stamp"
    assert _reason(encode_frame(MESSAGE, 7, 4, torch.arange(5.0), capacity=5, session=S)) == "sender"
    assert _reason(encode_frame(MESSAGE, 6, 3, torch.arange(5.0), capacity=5, session=S)) == "stale"
    assert _reason(encode_frame(MESSAGE, 8, 3, torch.arange(5.0), capacity=5, session=S)) == "step"
    assert _reason(encode_frame(MESSAGE, 7, 3, torch.arange(4.0), capacity=5, session=S)) == "length"
    for v in (float("nan"), float("inf"), -float("inf")):
        x = torch.arange(5.0)
        x[2] = v
        assert _reason(encode_frame(MESSAGE, 7, 3, x, capacity=5, session=S)) == "nonfinite"
    y = torch.zeros(2, dtype=torch.complex128)
    y[1] = complex(0.0, float("nan"))
    f = encode_frame(MESSAGE, 7, 3, to_wire(y), capacity=8, session=S)
    assert _reason(f, length=8, dtype=torch.complex128) == "nonfinite"
    assert {"short", "malformed", "stamp", "sender", "stale", "step", "length", "nonfinite",
            "late", "unsolicited", "duplicate"} == set(REASONS)


def test_declared_length_beyond_capacity_is_rejected_not_read() -> None:
    f = _good()
    ints = f.view(torch.int32)
    ints[4] = 10**6
    ints[-1] = stamp(S, MESSAGE, 7, 3, 10**6)
    assert _reason(f, length=None) == "length"


def test_fault_specs_and_options() -> None:
    f = parse_fault("2:nan@1,3")
    assert (f.worker, f.kind, f.steps) == (2, "nan", (1, 3)) and f.spec() == "2:nan@1,3"
    for bad in ("2:nan", "x:nan@1", "2:explode@1", "2:nan@"):
        with pytest.raises(OptionsError):
            parse_fault(bad)
    opts = RuntimeOptions(evict_timeout=2.5, deadline=1.0, time_scale=0.5, threads=2,
                          faults=(f, parse_fault("2:stop@4")))
    assert opts.faults_of(2) == {1: "nan", 3: "nan", 4: "stop"} and opts.faults_of(1) == {}
    p = argparse.ArgumentParser()
    _runtime_flags(p)
    again = _options(p.parse_args(opts.to_args()))
    assert again == opts
    for kw in ({"evict_timeout": 0}, {"deadline": -1.0}, {"time_scale": -1.0}, {"device": "tpu"}):
        with pytest.raises(OptionsError):
            RuntimeOptions(**kw)
