"""The defense-aware optimal ALIE / IPM and their line search."""

from __future__ import annotations

import math

import pytest
import torch

from byzantium import aggregators
from byzantium import attacks as A
from byzantium.attacks import AttackContext, AttackError


def counted(fn):
    calls = []

    def obj(t):
        calls.append(t)
        return fn(t)

    return obj, calls


def test_line_search_budget_and_expansion():
    obj, calls = counted(lambda t: t)  # increasing: expand every time
    tau, val = A.line_maximize(obj, evals=20)
    assert tau == 2.0**19 and val == tau and len(calls) == 20
    obj, calls = counted(lambda t: t)
    assert A.line_maximize(obj, evals=1) == (1.0, 1.0) and calls == [1.0]


def test_line_search_finds_interior_maximum():
    obj, calls = counted(lambda t: -((t - 5.0) ** 2))
    tau, val = A.line_maximize(obj, evals=20)
    # expansion 1, 2, 4, 8 (fails); contraction around 4 with steps 3.2, 2.56 (= 0.8 * 3.2), ...
    assert calls[:4] == [1.0, 2.0, 4.0, 8.0]
    assert calls[4:8] == pytest.approx([0.8, 7.2, 1.44, 6.56])
    assert len(calls) == 20 and abs(tau - 5.0) < 0.3 and val == -((tau - 5.0) ** 2)
    # maximum below the start: contraction goes down
    tau, _ = A.line_maximize(lambda t: -((t - 0.3) ** 2), evals=20)
    assert abs(tau - 0.3) < 0.1


def test_line_search_treats_nonfinite_as_worst():
    tau, val = A.line_maximize(lambda t: math.nan if t > 1.5 else t, evals=10)
    assert tau <= 1.5 and math.isfinite(val)


def honest_ctx(rule, f=3, h=10, d=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(h, d, generator=g) + 1.0
    return AttackContext(honest=x, n=h + f, num_byzantine=f, rule=rule)


RULES = {
    "mean": lambda x: x.mean(0),
    "median": lambda x: x.median(0).values,
    "registry-median": aggregators.get("median"),
    "trimmed_mean": aggregators.get("trimmed_mean", f=3),
}


@pytest.mark.parametrize("rule_name", list(RULES))
def test_optimal_variants_beat_fixed_scale(rule_name):
    rule = RULES[rule_name]
    c = honest_ctx(rule)
    f = c.num_byzantine
    fixed = {
        "alie_opt": A.get("alie", z=1.0).vector(c),  # tau = 1
        "ipm_opt": A.get("ipm", epsilon=1.0).vector(c),
    }
    for name, b1 in fixed.items():
        out, info = A.get(name).run(c)
        assert torch.equal(out[0], out[-1])  # shared
        got = A.distortion(rule, c.honest, out[0], f)
        base = A.distortion(rule, c.honest, b1, f)
        assert got == pytest.approx(info["objective"], rel=1e-6)
        assert got >= base, (name, got, base)
        if rule_name == "mean":
            # the mean is unbounded: distortion grows linearly in tau, so the search must beat tau=1
            assert got > 100 * base and info["tau"] == 2.0**19


def test_alie_opt_matches_formula_for_its_tau():
    c = honest_ctx(RULES["median"])
    out, info = A.get("alie_opt", sign="-").run(c)
    mu, sig = c.honest.mean(0), c.honest.std(0, correction=0)
    assert torch.allclose(out[0], mu - info["tau"] * sig)
    out, info = A.get("ipm_opt").run(c)
    assert torch.allclose(out[0], -info["tau"] * mu)


def test_optimal_needs_rule():
    c = honest_ctx(None)
    for name in ("alie_opt", "ipm_opt"):
        assert A.get(name).knowledge == "defense-aware"
        with pytest.raises(AttackError, match=rf"{name}: knowledge 'defense-aware' needs ctx.rule"):
            A.get(name)(c)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"evals": 0}, "evals must be an int >= 1"),
        ({"ratio": 1.5}, r"ratio must be in \(0, 1\)"),
        ({"expansion": 1.0}, "expansion must be > 1"),
        ({"tau0": -1}, "tau0 must be a finite number > 0"),
    ],
)
def test_optimal_bad_params(params, match):
    with pytest.raises(AttackError, match=match):
        A.get("alie_opt", **params)
