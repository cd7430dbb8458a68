"""Registry, context validation, shapes/dtypes, collusion, purity and parameter errors."""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from byzantium import attacks as A
from byzantium.attacks import AttackContext, AttackError

EXPECTED = {
    "alie", "alie_opt", "constant", "fang", "gaussian", "inf", "ipm", "ipm_opt", "label_flip", "mimic",
    "minmax", "minsum", "nan", "reversed", "sign_flip", "zero",
}
SHARED = {"alie", "alie_opt", "constant", "inf", "ipm", "ipm_opt", "mimic", "minmax", "minsum",
          "nan", "zero"}


def full_ctx(dtype=torch.float32, slots=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    honest = torch.randn(8, 5, generator=g, dtype=dtype)
    own = torch.randn(slots, 5, generator=g, dtype=dtype)
    return AttackContext(honest=honest, own=own, n=8 + slots, num_byzantine=slots,
                         rule=lambda x: x.median(0).values,
                         generator=torch.Generator().manual_seed(seed + 1))


def test_names_and_describe():
    assert set(A.names()) == EXPECTED
    rows = A.describe()
    assert [r[0] for r in rows] == A.names()
    for name, knowledge, summary, output, defaults in rows:
        assert knowledge in A.KNOWLEDGE and summary
        assert output == ("data" if name == "label_flip" else
                          "shared" if name in SHARED else "per-slot")
    assert dict((r[0], r[4]) for r in rows)["ipm"] == "epsilon=0.1, source=honest"


def test_get_binds_defaults_and_is_readonly():
    atk = A.get("ALIE ")
    assert atk.name == "alie" and atk.knowledge == "omniscient" and atk.shared
    assert dict(atk.params) == {"z": "auto", "z_rule": "n", "sign": "+", "std": "population",
                                "source": "honest"}
    assert A.get("alie", sign=-1).params["sign"] == "-"  # normalised
    with pytest.raises(TypeError):
        atk.params["z"] = 2.0  # type: ignore[index]
    assert repr(A.get("ipm", epsilon=2)) == "Attack('ipm', epsilon=2.0, source='honest')"
    assert A.get("sign_flip").knowledge == "local" and not A.get("sign_flip").shared
    assert A.get("sign_flip", mode="mean").knowledge == "omniscient"
    assert A.get("sign_flip", mode="mean").shared
    assert {n: A.get(n).knowledge for n in ("zero", "gaussian", "reversed", "mimic")} == {
        "zero": "none", "gaussian": "none", "reversed": "local", "mimic": "omniscient"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_attack_shape_dtype_purity(name, dtype):
    c = full_ctx(dtype)
    before = (c.honest.clone(), c.own.clone())
    atk = A.get(name)
    out = atk(c)
    assert out.shape == (3, 5) and out.dtype == dtype and out.is_contiguous()
    assert torch.equal(c.honest, before[0]) and torch.equal(c.own, before[1])
    # the output never aliases the context
    assert out.data_ptr() not in (c.honest.data_ptr(), c.own.data_ptr())
    out.fill_(7.0)
    assert torch.equal(c.honest, before[0]) and torch.equal(c.own, before[1])
    if atk.shared:
        o2 = atk(full_ctx(dtype))
        assert torch.equal(o2, o2[:1].expand_as(o2), ) or torch.isnan(o2).all()
        v = atk.vector(full_ctx(dtype))
        assert v.shape == (5,)
        assert torch.equal(v, o2[0]) or torch.isnan(v).all()
    # no slots -> empty output
    c0 = AttackContext(honest=c.honest, own=c.own[:0], n=8, num_byzantine=0)
    assert A.get(name)(c0).shape == (0, 5)


def test_public_functions_match_registry():
    c = full_ctx()
    assert torch.equal(A.alie(c, z=1.0), A.get("alie", z=1.0)(c))
    assert torch.equal(A.reversed_gradient(c, scale=3), -3 * c.own)
    with pytest.raises(AttackError, match="epsilon must be a finite number > 0"):
        A.ipm(c, epsilon=-1)


def test_collusion_for_per_slot_attacks():
    c = full_ctx()
    g = A.get("gaussian")
    free = g(c)
    assert not torch.equal(free[0], free[1])
    c2 = full_ctx()
    col = g(c2, collude=True)
    assert torch.equal(col, col[:1].expand_as(col))
    assert torch.equal(A.get("sign_flip")(c, collude=True), (-c.own[0]).expand(3, 5))
    assert torch.equal(A.get("reversed").vector(c), -100 * c.own[0])
    # shared attacks are unaffected by collude
    assert torch.equal(A.get("ipm")(c, collude=True), A.get("ipm")(c))


def test_slots_without_own():
    c = AttackContext(honest=torch.ones(4, 3), n=6, num_byzantine=2)
    assert c.slots == 2 and A.get("constant")(c).shape == (2, 3)
    c = AttackContext(honest=torch.ones(4, 3), n=6, num_byzantine=2, slots=5)
    assert A.get("ipm")(c).shape == (5, 3)
    with pytest.raises(AttackError, match=r"reversed: needs ctx.own"):
        A.get("reversed")(c)
    with pytest.raises(AttackError, match=r"gaussian: needs ctx.generator"):
        A.get("gaussian")(c)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(honest=torch.ones(3)), r"honest must be a floating \(h, d\) tensor"),
        (dict(honest=torch.ones(3, 2, dtype=torch.int64)), "honest must be a floating"),
        (dict(n=2, num_byzantine=3), "0 <= num_byzantine <= n"),
        (dict(n=0, num_byzantine=0), "n >= 1"),
        (dict(n=2.0), "n must be an int"),
        (dict(own=torch.ones(2, 4)), "own and honest must share d"),
        (dict(own=torch.ones(2, 2, dtype=torch.float64)), "own and honest must share d, dtype"),
        (dict(own=torch.ones(2, 2), slots=3), "slots=3 but own has 2 rows"),
        (dict(slots=-1), "slots must be an int >= 0"),
        (dict(rule=3), "rule must be callable"),
        (dict(generator=1234), "generator must be a torch.Generator"),
    ],
)
def test_context_validation(kwargs, match):
    base = dict(honest=torch.ones(3, 2), n=5, num_byzantine=2)
    with pytest.raises(AttackError, match=match):
        AttackContext(**{**base, **kwargs})


@pytest.mark.parametrize(
    "name, params, match",
    [
        ("nope", {}, "unknown attack 'nope'; available: alie, alie_opt"),
        ("alie", {"eps": 1}, r"alie: unknown parameter\(s\) \['eps'\]; accepted: z, z_rule"),
        ("zero", {"c": 1}, r"accepted: \(none\)"),
        ("ipm", {"epsilon": -0.1}, "ipm: epsilon must be a finite number > 0, got epsilon=-0.1"),
        ("ipm", {"epsilon": 0}, "epsilon must be a finite number > 0"),
        ("ipm", {"epsilon": math.nan}, "epsilon must be a finite number > 0"),
        ("alie", {"z": math.inf}, "alie: z must be a finite number, got z=inf"),
        ("alie", {"z": "max"}, "z must be 'auto' or a finite number"),
        ("alie", {"z_rule": "h"}, r"z_rule must be one of \['n', 'honest'\]"),
        ("alie", {"sign": "x"}, "sign must be '\\+' or '-'"),
        ("alie", {"std": "sample"}, "std must be one of"),
        ("alie", {"source": "mine"}, "source must be one of"),
        ("reversed", {"scale": 0}, "scale must be a finite number > 0"),
        ("gaussian", {"std": -1.0}, "gaussian: std must be >= 0"),
        ("constant", {"c": True}, "c must be a finite number"),
        ("mimic", {"index": 1.5}, "index must be an int"),
        ("sign_flip", {"mode": "all"}, r"mode must be one of \['own', 'mean'\]"),
        ("minmax", {"direction": "up"}, "direction must be one of"),
        ("label_flip", {"source": 1}, "give both source and target"),
    ],
)
def test_bad_params(name, params, match):
    with pytest.raises(AttackError, match=match):
        A.get(name, **params)


def test_call_time_errors():
    c = AttackContext(honest=torch.ones(1, 2), n=3, num_byzantine=2)
    with pytest.raises(AttackError, match=r"mimic: index must be in \[-h, h\)"):
        A.get("mimic", index=1)(c)
    with pytest.raises(AttackError, match="std='unbiased'|at least 2"):
        A.get("alie", z=1.0, std="unbiased")(c)
    empty = AttackContext(honest=torch.ones(0, 2), n=3, num_byzantine=2)
    with pytest.raises(AttackError, match="alie: needs at least 1 honest vector"):
        A.get("alie")(empty)
    with pytest.raises(AttackError, match="expected an AttackContext"):
        A.get("zero")(torch.ones(2, 2))  # type: ignore[arg-type]
    assert issubclass(AttackError, ValueError)


def test_attack_equality_and_pickle():
    a = A.get("alie", z=1.5, sign="-")
    assert a == A.get("alie", sign=-1, z=1.5) and a != A.get("alie", z=1.5)
    assert len({a, A.get("alie", sign="-", z=1.5)}) == 1
    b = pickle.loads(pickle.dumps(a))
    assert b == a and b.knowledge == "omniscient" and b.shared
    c = full_ctx()
    assert torch.equal(b(c), a(c))
