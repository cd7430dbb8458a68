"""Majority vote per file: exact path, tolerance, ties, missing copies, policies, schemes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from byzantium.assignments import corrupted_files, mols, repetition, worst_case
from byzantium.decoding import (
    NoMajorityError,
    VoteError,
    gather_copies,
    majority_vote,
    vote_messages,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def replicate(h: torch.Tensor, r: int) -> torch.Tensor:
    return h[:, None, :].repeat(1, r, 1)


def test_exact_fast_path_and_byzantine_minority() -> None:
    h = torch.randn(5, 20, generator=gen())
    X = replicate(h, 3)
    X[1, 0] = 100.0  # one Byzantine copy
    X[2, 2] = -h[2]
    X[3, 1] = float("nan")
    res = majority_vote(X)
    assert res.ok.all() and torch.equal(res.values, h)
    assert res.exact.tolist() == [True, False, False, False, True]
    assert res.agree.tolist() == [3, 2, 2, 2, 3]
    assert res.winner.tolist() == [0, 1, 0, 0, 0]
    assert res.status == ("ok",) * 5


def test_colluding_majority_wins() -> None:
    h = torch.randn(2, 8, generator=gen(1))
    X = replicate(h, 5)
    byz = torch.full((8,), 7.0)
    X[0, [1, 3, 4]] = byz  # 3 of 5 colluding copies: r' = 3 -> they win
    X[1, [0, 2]] = byz  # 2 of 5: honest wins
    res = majority_vote(X)
    assert torch.equal(res.values[0], byz) and torch.equal(res.values[1], h[1])
    assert res.agree.tolist() == [3, 3] and res.winner.tolist() == [1, 1]


def test_ties_and_no_majority() -> None:
    a, b, c = torch.randn(3, 6, generator=gen(2))
    X = torch.stack([
        torch.stack([a, b, c]),  # r=3, all distinct
        torch.stack([a, a, b]),  # majority a
        torch.stack([b, a, a]),  # majority a, winner is copy 1
    ])
    res = majority_vote(X)
    assert res.ok.tolist() == [False, True, True]
    assert res.status == ("no_majority", "ok", "ok")
    assert res.winner.tolist() == [-1, 0, 1] and res.agree.tolist() == [1, 2, 2]
    assert torch.isnan(res.values[0]).all() and torch.equal(res.kept(), torch.stack([a, a]))
    # r = 5: two pairs and a singleton -> no value reaches r' = 3
    Y = torch.stack([a, b, a, b, c])
    r5 = majority_vote(Y)
    assert not bool(r5.ok) and r5.status == "no_majority" and int(r5.agree) == 2


def test_tolerance_boundaries() -> None:
    rtol = 1e-5
    e0 = torch.zeros(4, dtype=torch.float64)
    e0[0] = 1.0
    inside = e0.clone()
    inside[1] = rtol  # ||diff|| = rtol <= rtol * sqrt(1 + rtol^2)
    outside = e0.clone()
    outside[1] = 1.01 * rtol
    far = e0.clone()
    far[1] = 0.5
    res = majority_vote(torch.stack([torch.stack([far, e0, inside]),
                                     torch.stack([far, e0, outside])]), rtol=rtol)
    assert res.ok.tolist() == [True, False]
    assert res.winner[0] == 1 and res.agree.tolist() == [2, 1]
    # atol: tiny vectors near zero agree only with an absolute tolerance
    z = torch.zeros(3, 4, dtype=torch.float64)
    z[1, 0] = 1e-9
    z[2, 0] = 5.0
    assert not bool(majority_vote(z, rtol=rtol).ok)
    assert bool(majority_vote(z, rtol=rtol, atol=1e-8).ok)
    # -0.0 and +0.0 differ bitwise but agree (slow path)
    pz = torch.zeros(3, 4)
    pz[0] = -0.0
    out = majority_vote(pz)
    assert bool(out.ok) and not bool(out.exact) and int(out.agree) == 3


def test_non_transitive_tolerance_picks_the_middle_copy() -> None:
    rtol = 1e-3
    base = torch.zeros(8, dtype=torch.float64)
    base[0] = 1.0
    step = torch.zeros(8, dtype=torch.float64)
    step[1] = 0.8e-3  # neighbours 0.8e-3 apart agree, copies 1.6e-3 apart do not
    a, b, c = base, base + step, base + 2 * step
    res = majority_vote(torch.stack([a, b, c]), rtol=rtol)
    assert bool(res.ok) and int(res.winner) == 1 and int(res.agree) == 3
    assert torch.equal(res.values, b)
    # equal support: r=5 chain x0~x1~x2~x3~x4 (neighbours only) -> supports 2,3,3,3,2 -> the
    # lowest index among the maxima (copy 1) wins
    chain = torch.stack([base + k * step for k in range(5)])
    r5 = majority_vote(chain, rtol=rtol)
    assert bool(r5.ok) and int(r5.winner) == 1 and int(r5.agree) == 3
    # copy order matters only for ties: reversing the chain picks the new copy 1 (old copy 3)
    r5b = majority_vote(chain.flip(0), rtol=rtol)
    assert torch.equal(r5b.values, chain[3])


def test_byzantine_within_tolerance_is_bounded() -> None:
    """A Byzantine winner must agree with an honest copy: its error is within the tolerance."""
    h = torch.randn(1, 1000, generator=gen(3), dtype=torch.float64)[0]
    rtol = 1e-4
    byz = h + rtol * 0.4 * h.norm() * torch.nn.functional.normalize(torch.randn(
        1000, generator=gen(4), dtype=torch.float64), dim=0)
    X = torch.stack([byz, h, h * (1 + 1e-12)])
    res = majority_vote(X, rtol=rtol)
    assert bool(res.ok)
    assert float((res.values - h).norm()) <= rtol * float(h.norm()) * 1.01


def test_missing_copies() -> None:
    h = torch.randn(4, 10, generator=gen(5))
    X = replicate(h, 3)
    X[:, 0] = 999.0  # garbage in the slots of missing copies must be ignored
    present = torch.tensor([[False, True, True],   # 2 of 3 agree -> ok (copy 1 is the reference)
                            [False, False, True],  # lone copy: not trusted
                            [False, False, False],  # nothing arrived
                            [True, True, True]])   # copy 0 is a present outlier
    res = majority_vote(X, present)
    assert res.ok.tolist() == [True, False, False, True]
    assert res.winner.tolist() == [1, -1, -1, 1]
    assert res.agree.tolist() == [2, 1, 0, 2]
    assert bool(res.exact[0]) and torch.equal(res.values[0], h[0])
    assert torch.isnan(res.values[1:3]).all()
    med = majority_vote(X, present, on_no_majority="median")
    assert torch.equal(med.values[1], h[1]) and torch.isnan(med.values[2]).all()


def test_non_finite_copies_never_agree() -> None:
    h = torch.randn(3, 6, generator=gen(6))
    X = replicate(h, 3)
    X[0, 1:] = float("nan")  # two identical NaN Byzantine copies: no majority for them
    X[1, :2] = float("inf")  # two identical Inf copies
    X[2, 0] = torch.full((6,), 3e38)  # huge but finite colluding copies are legitimate values
    X[2, 1] = torch.full((6,), 3e38)
    res = majority_vote(X)
    assert res.ok.tolist() == [False, False, True]
    assert res.agree.tolist() == [1, 1, 2]
    assert torch.equal(res.values[2], torch.full((6,), 3e38))
    X[2, 2] = float("nan")  # the honest copy is malformed: the finite colluders still win
    assert torch.equal(majority_vote(X).values[2], torch.full((6,), 3e38))
    allnan = torch.full((3, 5), float("nan"))
    assert not bool(majority_vote(allnan).ok)


def test_policies() -> None:
    a, b, c = torch.tensor([[1.0, 5.0], [2.0, -1.0], [3.0, 0.0]])
    X = torch.stack([a, b, c])[None]
    drop = majority_vote(X)
    assert torch.isnan(drop.values).all() and drop.kept().shape == (0, 2)
    med = majority_vote(X, on_no_majority="median")
    assert torch.equal(med.values[0], torch.tensor([2.0, 0.0])) and not bool(med.ok[0])
    with pytest.raises(NoMajorityError, match=r"no value reached 2 of 3 agreeing copies for "
                                              r"files \[0\]"):
        majority_vote(X, on_no_majority="raise")


def test_bad_input() -> None:
    with pytest.raises(VoteError, match="r must be odd"):
        majority_vote(torch.zeros(3, 4, 5))  # shape (files=3, r=4, d=5)
    with pytest.raises(VoteError, match="r must be odd"):
        majority_vote(torch.zeros(2, 5))  # one file, r = 2
    with pytest.raises(VoteError, match="floating point"):
        majority_vote(torch.zeros(3, 3, dtype=torch.int64))
    with pytest.raises(VoteError, match=r"\(r, d\) or \(num_files, r, d\)"):
        majority_vote(torch.zeros(3))
    with pytest.raises(VoteError, match="on_no_majority must be"):
        majority_vote(torch.zeros(3, 2), on_no_majority="mean")  # type: ignore[arg-type]
    with pytest.raises(VoteError, match="rtol and atol must be >= 0"):
        majority_vote(torch.zeros(3, 2), rtol=-1.0)
    with pytest.raises(VoteError, match="present must be a bool mask"):
        majority_vote(torch.zeros(2, 3, 4), torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(VoteError, match="must be a torch.Tensor"):
        majority_vote(np.zeros((3, 2)))  # type: ignore[arg-type]


def test_dtypes_and_views() -> None:
    h = torch.randn(3, 7, generator=gen(7), dtype=torch.float64)
    res = majority_vote(h[:, None, :].expand(3, 5, 7))  # stride-0 replicas
    assert res.ok.all() and res.exact.all() and torch.equal(res.values, h)
    half = replicate(h.half(), 3)
    half[0, 2] = 1.0
    r16 = majority_vote(half)
    assert r16.ok.all() and torch.equal(r16.values, h.half())


def test_honest_replicas_with_round_off_still_vote() -> None:
    """Replicas from different machines differ in the last bits; Byzantine copies do not pass."""
    g = gen(8)
    h = torch.randn(25, 300, generator=g)
    X = replicate(h, 3)
    X = X * (1 + 1e-7 * torch.randn(X.shape, generator=g))
    X[:5, 0] = X[:5, 0] + 0.01  # Byzantine: 1% of a coordinate scale
    res = majority_vote(X)
    assert res.ok.all() and not res.exact.any()
    assert (res.winner[:5] != 0).all()
    assert torch.allclose(res.values, h, rtol=1e-5, atol=1e-6)


def test_gather_copies() -> None:
    a = mols(5, 3)
    msgs = torch.randn(15, 5, 4, generator=gen(9))
    copies, present = gather_copies(msgs, a)
    assert copies.shape == (25, 3, 4) and present.all()
    for i, ws in enumerate(a.workers_of):
        for c, w in enumerate(ws):
            assert torch.equal(copies[i, c], msgs[w, a.files_of[w].index(i)])
    received = torch.ones(15, dtype=torch.bool)
    received[[0, 5]] = False
    copies2, present2 = gather_copies(msgs.reshape(75, 4), a, received)
    assert torch.equal(copies2, copies)
    assert present2[0].tolist() == [False, False, True]  # file 0: workers 0, 5, 10
    assert int((~present2).sum()) == 10
    slots_only, _ = gather_copies(msgs, a.copy_slots())
    assert torch.equal(slots_only, copies)


def test_draco_repetition_recovers_the_adversary_free_gradient() -> None:
    """Repetition groups + vote equal the honest group gradients whenever every group has fewer
    than r' Byzantines; groups with r' or more are won by the colluders (all sets, K=9)."""
    K, r = 9, 3
    a = repetition(K, r)
    honest = torch.randn(a.num_files, 12, generator=gen(10))
    byz_value = torch.full((12,), -100.0)
    base = honest[[fs[0] for fs in a.files_of]][:, None, :]  # (K, 1, d): group gradient
    for q in range(0, K + 1):
        for S in itertools.combinations(range(K), q):
            msgs = base.clone()
            msgs[list(S), 0] = byz_value
            copies, present = gather_copies(msgs, a)
            res = majority_vote(copies, present)
            lost = set(corrupted_files(a, S))
            expect = torch.stack([byz_value if i in lost else honest[i]
                                  for i in range(a.num_files)])
            assert torch.equal(res.values, expect)
            if not lost:
                assert torch.equal(res.values.mean(dim=0), honest.mean(dim=0))


def test_byzshield_worst_case_set_corrupts_exactly_its_files() -> None:
    a = mols(5, 3)
    honest = torch.randn(a.num_files, 10, generator=gen(11))
    for q in (2, 3, 5):
        wc = worst_case(a, q)
        msgs = torch.stack([honest[list(fs)] for fs in a.files_of])  # (K, l, d)
        msgs[list(wc.workers)] = 42.0  # colluders send the same vector for every file
        copies, present = gather_copies(msgs, a)
        res = majority_vote(copies, present)
        won = tuple(int(i) for i in torch.nonzero((res.values == 42.0).all(dim=1)).flatten())
        assert won == wc.files and len(won) == wc.c_max
        assert res.ok.all()


def test_vote_messages_matches_gathered_vote_and_shared_rows() -> None:
    a = mols(5, 3)
    files = torch.randn(a.num_files, 9, generator=gen(12))
    msgs = torch.stack([files[list(fs)] for fs in a.files_of])
    wc = worst_case(a, 3)
    msgs[list(wc.workers)] = 5.0
    received = torch.ones(15, dtype=torch.bool)
    received[7] = False
    direct = vote_messages(msgs, a, received)
    copies, present = gather_copies(msgs, a, received)
    ref = majority_vote(copies, present)
    for field in ("values", "ok", "agree", "winner", "exact"):
        x, y = getattr(direct, field), getattr(ref, field)
        assert torch.equal(torch.nan_to_num(x.float(), 7.0), torch.nan_to_num(y.float(), 7.0))
    # simulator layout: the honest gradient of each file stored once, replicas point at it
    rows = torch.cat([files, torch.full((1, 9), 5.0)])
    slots = np.array([[a.num_files if w in wc.workers else i for w in ws]
                      for i, ws in enumerate(a.workers_of)])
    shared = vote_messages(rows, slots)
    assert torch.equal(shared.values, vote_messages(msgs, a).values)
    assert shared.exact.sum() == a.num_files - len({i for w in wc.workers
                                                   for i in a.files_of[w]})


def test_vote_messages_errors() -> None:
    a = mols(5, 3)
    with pytest.raises(VoteError, match="load is l=5"):
        vote_messages(torch.zeros(15, 4, 3), a)
    with pytest.raises(VoteError, match=r"received must be a bool mask of shape \(15,\)"):
        vote_messages(torch.zeros(15, 5, 3), a, torch.ones(14, dtype=torch.bool))
    with pytest.raises(VoteError, match="slots must be"):
        vote_messages(torch.zeros(10, 3), a.copy_slots())
    with pytest.raises(VoteError, match="pass the assignment"):
        vote_messages(torch.zeros(75, 3), a.copy_slots(), torch.ones(15, dtype=torch.bool))
    with pytest.raises(VoteError, match="r must be odd"):
        vote_messages(torch.zeros(4, 3), np.array([[0, 1], [2, 3]]))


def test_generic_path_matches_the_cpu_path() -> None:
    """The torch-only path (other devices, bfloat16, non-contiguous rows) gives the same votes;
    exercised on CPU through a stack whose rows are not contiguous."""
    g = gen(13)
    F, r, d = 12, 5, 40
    h = torch.randn(F, d, generator=g, dtype=torch.float64)
    X = h[:, None, :].repeat(1, r, 1)
    X[0, :2] = 9.0                                     # minority Byzantines
    X[1, :3] = 9.0                                     # colluding majority
    X[2, 4, 0] = float("nan")                          # malformed honest copy
    X[3] = X[3] * (1 + 1e-9 * torch.randn(r, d, generator=g, dtype=torch.float64))  # round-off
    X[4, 1:4] = torch.randn(3, d, generator=g, dtype=torch.float64)  # no majority
    X[5, 0] = -0.0 * X[5, 0]
    present = torch.ones(F, r, dtype=torch.bool)
    present[6, :3] = False                             # two copies left: agree, but 2 < r'
    present[7, 0] = False
    flat = X.reshape(F * r, d)
    strided = flat.T.contiguous().T                    # same values, column-major storage
    assert strided.stride(1) != 1
    idx = np.arange(F * r).reshape(F, r)
    for policy in ("drop", "median"):
        fast = vote_messages(flat, idx, on_no_majority=policy, rtol=1e-6)
        slow = vote_messages(strided, idx, on_no_majority=policy, rtol=1e-6)
        for field in ("ok", "agree", "winner", "exact"):
            assert torch.equal(getattr(fast, field), getattr(slow, field)), field
        assert torch.equal(torch.nan_to_num(fast.values, 3.0), torch.nan_to_num(slow.values, 3.0))
    m = majority_vote(X, present)
    assert m.ok.tolist() == [True, True, True, True, False, True, False, True, True, True, True,
                             True]
    assert torch.equal(m.values[1], torch.full((d,), 9.0, dtype=torch.float64))
    bf = majority_vote(X[:2].to(torch.bfloat16))
    assert bf.ok.all() and torch.equal(bf.values[0], h[0].to(torch.bfloat16))


def test_out_buffer_is_reused() -> None:
    a = mols(5, 3)
    files = torch.randn(a.num_files, 6, generator=gen(14))
    msgs = torch.stack([files[list(fs)] for fs in a.files_of])
    msgs[[0, 5]] = 3.0  # file 0 lost, a few files on the tolerance path
    buf = torch.empty(a.num_files, 6)
    res = vote_messages(msgs, a, out=buf)
    assert res.values is buf
    assert torch.equal(buf, vote_messages(msgs, a).values)
    copies, _ = gather_copies(msgs, a)
    buf2 = torch.full((a.num_files, 6), 99.0)
    assert torch.equal(majority_vote(copies, out=buf2).values, buf)
    strided = copies.reshape(-1, 6).T.contiguous().T  # rows not contiguous: generic path
    assert strided.stride(1) != 1
    buf3 = torch.empty(a.num_files, 6)
    res3 = vote_messages(strided, np.arange(75).reshape(25, 3), out=buf3)
    assert res3.values is buf3 and torch.equal(buf3, buf)
    with pytest.raises(VoteError, match="out must be a contiguous"):
        vote_messages(msgs, a, out=torch.empty(a.num_files, 5))
    with pytest.raises(VoteError, match="out must be a contiguous"):
        vote_messages(msgs, a, out=torch.empty(a.num_files, 6, dtype=torch.float64))
