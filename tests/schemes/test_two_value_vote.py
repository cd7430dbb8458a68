"""The simulator's two-value vote reproduces majority_vote exactly on two-valued copy stacks."""

from __future__ import annotations

import pytest
import torch

from byzantium.decoding.vote import majority_vote
from byzantium.schemes.vote import two_value_vote


@pytest.mark.parametrize("r", [1, 3, 5, 7])
@pytest.mark.parametrize("seed", range(6))
def test_matches_majority_vote(r: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    m, d = 64, 17
    h = torch.randn(m, d, generator=g)
    kind = torch.randint(0, 6, (m,), generator=g)
    b = torch.randn(m, d, generator=g) * 10
    b[kind == 1] = h[kind == 1]  # identical: exact path
    b[kind == 2] = h[kind == 2] * (1 + 1e-7)  # within tolerance
    b[kind == 3] = float("nan")
    b[kind == 4] = h[kind == 4] * (1 + 1e-3)  # just outside tolerance
    byz = torch.rand(m, r, generator=g) < 0.45
    present = torch.rand(m, r, generator=g) < 0.8
    copies = torch.where(byz.unsqueeze(2), b.unsqueeze(1), h.unsqueeze(1))
    ref = majority_vote(copies, present, rtol=1e-5)
    win_byz, ok = two_value_vote(h, b, byz, present, r=r, rtol=1e-5)
    assert torch.equal(ok, ref.ok)
    got = torch.where(win_byz.unsqueeze(1), b, h)
    assert torch.equal(got[ok], ref.values[ref.ok])
    # the two-valued test data covers every case
    assert ok.any() and (~ok).any() or r == 1
