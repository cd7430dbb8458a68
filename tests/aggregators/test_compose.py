"""Composition: spec strings, parameter routing, constraints across stages, errors."""

from __future__ import annotations

import pytest
import torch

from byzantium.aggregators import (
    REGISTRY,
    Aggregator,
    AggregatorError,
    ConstraintError,
    NonFiniteError,
    Stage,
    bucketing,
    chain,
    clip,
    get,
    median,
    names,
    nnm,
    parse_spec,
    trimmed_mean,
)


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(10, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


def test_single_rule_by_name(x):
    agg = get("trimmed_mean", f=2)
    assert isinstance(agg, Aggregator)
    assert agg.spec == "trimmed_mean" and agg.f == 2
    assert repr(agg) == "Aggregator('trimmed_mean', f=2)"
    assert torch.equal(agg(x), trimmed_mean(x, f=2))


def test_doc_example():
    out = get("trimmed_mean", f=1)(torch.tensor([[0.0], [1.0], [2.0], [100.0]]))
    assert torch.equal(out, torch.tensor([1.5]))


def test_spec_is_case_and_space_insensitive(x):
    assert [e.name for e in parse_spec(" Clip + Trimmed_Mean ")] == ["clip", "trimmed_mean"]
    assert torch.equal(get(" CLIP+trimmed_mean", f=1, tau=1.0)(x), get("clip+trimmed_mean", f=1, tau=1.0)(x))


def test_clip_then_trimmed_mean_equals_manual(x):
    out = get("clip+trimmed_mean", f=2, tau=0.5)(x)
    assert torch.equal(out, trimmed_mean(clip(x, tau=0.5), f=2))


def test_bucketing_then_median_equals_manual(x):
    out = get("bucketing+median", f=1, s=2, generator=torch.Generator().manual_seed(7))(x)
    buckets = bucketing(x, s=2, generator=torch.Generator().manual_seed(7))
    assert buckets.shape == (5, 6)
    assert torch.equal(out, median(buckets, f=1))


def test_three_stage_chain(x):
    out = get("clip+nnm+trimmed_mean", f=2, tau=1.0)(x)
    assert torch.allclose(out, trimmed_mean(nnm(clip(x, tau=1.0), f=2), f=2), atol=1e-12)


def test_per_stage_parameters_override_shared_ones(x):
    agg = get("clip+clip+mean", tau=1.0)
    assert [dict(st.params) for st in agg.stages] == [{"tau": 1.0}, {"tau": 1.0}, {}]
    agg = get("bucketing+median", f=0, s=5, bucketing={"s": 2})
    assert dict(agg.stages[0].params) == {"s": 2}
    assert agg(x).shape == (6,)


def test_chain_from_stage_objects_and_names(x):
    st = Stage(REGISTRY["clip"], {"tau": 0.3})
    agg = chain(st, "median", f=1)
    assert agg.spec == "clip+median"
    assert torch.equal(agg(x), median(clip(x, tau=0.3)))


def test_f_flows_through_bucketing_and_constraints_see_reduced_n():
    x = torch.randn(6, 3)
    # 6 inputs, buckets of 2 -> 3 inputs for the median; f=1: 3 > 2 ok
    assert get("bucketing+median", f=1, s=2)(x).shape == (3,)
    with pytest.raises(ConstraintError, match=r"median \(stage 2 of 'bucketing\+median'\): requires n > 2f, got n=2, f=1"):
        get("bucketing+median", f=1, s=4)(x)


def test_unknown_names_list_what_exists():
    with pytest.raises(AggregatorError, match=r"unknown aggregator 'kurm' in 'nnm\+kurm'; rules: .*median.*pre-aggregations: .*bucketing"):
        get("nnm+kurm", f=1)
    with pytest.raises(AggregatorError, match="unknown aggregator ''"):
        get("nnm++median")
    with pytest.raises(AggregatorError, match="non-empty string"):
        get("")


def test_order_errors():
    with pytest.raises(AggregatorError, match="'median' is a rule; only pre-aggregations"):
        get("median+trimmed_mean")
    with pytest.raises(AggregatorError, match="must end in a rule .* got 'nnm'"):
        get("nnm")


def test_parameter_routing_errors():
    with pytest.raises(AggregatorError, match=r"unknown parameter\(s\) \['taux'\] for clip\+median; accepted: \['f', 'tau'\]"):
        get("clip+median", tau=1.0, taux=2.0)
    with pytest.raises(AggregatorError, match=r"unknown parameter\(s\) \['q'\] for bucketing"):
        get("bucketing+median", bucketing={"s": 2, "q": 1})
    with pytest.raises(AggregatorError, match="clip: missing required parameter\\(s\\) \\['tau'\\]"):
        get("clip+median")
    with pytest.raises(AggregatorError, match="bucketing: missing required parameter\\(s\\) \\['s'\\]"):
        get("bucketing+median", f=1)
    with pytest.raises(AggregatorError, match="f is set once for the whole chain"):
        get("nnm+median", f=1, nnm={"f": 2})


def test_bad_f_and_parameter_values():
    with pytest.raises(ConstraintError, match="f must be a non-negative integer, got f=1.5"):
        get("median", f=1.5)
    with pytest.raises(ConstraintError, match="f must be >= 0, got f=-1"):
        get("median", f=-1)
    with pytest.raises(ConstraintError, match="bucketing: s \\(bucket size\\) must be an integer >= 1, got s=0"):
        get("bucketing+median", s=0)(torch.randn(4, 2))
    with pytest.raises(ConstraintError, match="clip: tau must be a positive finite number, got tau=-1"):
        get("clip+median", tau=-1)(torch.randn(4, 2))


def test_bad_stack_is_reported_with_the_spec():
    with pytest.raises(AggregatorError, match=r"^clip\+median: expected a stacked \(n, d\) tensor"):
        get("clip+median", tau=1.0)(torch.zeros(4))
    with pytest.raises(AggregatorError, match="clip\\+median: expected float32 or float64"):
        get("clip+median", tau=1.0)(torch.zeros(4, 2, dtype=torch.int32))


def test_nonfinite_rows_removed_once_at_chain_entry():
    x = torch.randn(7, 4, generator=torch.Generator().manual_seed(0))
    bad = x.clone()
    bad[2, 1] = float("nan")
    out = get("clip+trimmed_mean", f=2, tau=1.0)(bad)
    clean = torch.cat([x[:2], x[3:]])
    # one row removed: the trimmed mean runs with f = 1 on 6 rows
    assert torch.equal(out, trimmed_mean(clip(clean, tau=1.0), f=1))
    bad[5, 0] = float("inf")
    bad[0, 3] = -float("inf")
    with pytest.raises(NonFiniteError, match=r"clip\+trimmed_mean: 3 input rows .* at most f=2"):
        get("clip+trimmed_mean", f=2, tau=1.0)(bad)


def test_names_by_kind():
    assert set(names("preaggregation")) >= {"nnm", "bucketing", "clip"}
    assert "nnm" not in names("rule") and "median" in names("rule")
    assert names() == sorted(REGISTRY)
