"""Registry: input validation, constraints, the non-finite helpers, registration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from byzantium.aggregators import (
    REGISTRY,
    AggregatorError,
    ConstraintError,
    NonFiniteError,
    describe,
    median,
    trimmed_mean,
)
from byzantium.aggregators.registry import (
    Constraint,
    check_f,
    check_output,
    drop_nonfinite_rows,
    rule,
    validate_stack,
)

EXPECTED_RULES = {"mean", "median", "trimmed_mean", "meamed", "centered_clipping", "median_of_means"}
EXPECTED_PRE = {"nnm", "bucketing", "clip"}


def test_own_entries_registered_with_kind():
    for name in EXPECTED_RULES:
        assert REGISTRY[name].kind == "rule"
        assert REGISTRY[name].fn.__wrapped_rule__ is not None
    for name in EXPECTED_PRE:
        assert REGISTRY[name].kind == "preaggregation"
        assert REGISTRY[name].maps_nf is not None


def test_entry_params_follow_signature():
    assert REGISTRY["trimmed_mean"].params == ("f",)
    assert REGISTRY["bucketing"].params == ("s", "generator")
    assert REGISTRY["centered_clipping"].params == ("f", "tau", "iterations", "start")


def test_describe_lists_rules_first_with_constraints():
    rows = describe()
    kinds = [r[1] for r in rows]
    assert kinds == sorted(kinds, key=lambda k: k != "rule")
    by_name = {r[0]: r for r in rows}
    assert by_name["trimmed_mean"][2] == "n > 2f"
    assert by_name["bucketing"][1] == "preaggregation"


def test_register_twice_raises():
    with pytest.raises(ValueError, match="registered twice"):

        @rule("mean")
        def again(grads):  # pragma: no cover - never called
            return grads


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.zeros(5), r"stacked \(n, d\) tensor, got shape \(5,\)"),
        (torch.zeros(2, 3, 4), r"got shape \(2, 3, 4\)"),
        (torch.zeros(3, 4, dtype=torch.int64), "float32 or float64 gradients, got torch.int64"),
        (torch.zeros(3, 4, dtype=torch.bool), "got torch.bool"),
        (np.zeros((3, 4)), "expected a torch.Tensor of shape \\(n, d\\), got ndarray"),
        ([[1.0, 2.0]], "got list"),
        (torch.zeros(0, 4), "at least one input row, got n=0"),
    ],
)
def test_validate_stack_errors(bad, match):
    with pytest.raises(AggregatorError, match=match):
        validate_stack("median", bad)
    with pytest.raises(AggregatorError, match="^median: "):
        median(bad)


def test_validate_stack_accepts_float_types():
    for dt in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        x = torch.zeros(2, 3, dtype=dt)
        assert validate_stack("r", x) is x


@pytest.mark.parametrize("f", [-1, 1.5, "2", True, None])
def test_check_f_rejects_non_integers(f):
    with pytest.raises(ConstraintError, match="f must be"):
        check_f("trimmed_mean", f)
    with pytest.raises(ConstraintError, match="^trimmed_mean: f must be"):
        trimmed_mean(torch.zeros(5, 2), f=f)


def test_check_f_accepts_numpy_integers():
    assert check_f("r", np.int64(3)) == 3


def test_constraint_message_names_rule_constraint_and_values():
    c = Constraint("n > 2f", lambda n, f: n > 2 * f)
    c.check("r", 5, 2)
    with pytest.raises(ConstraintError, match=r"^r: requires n > 2f, got n=4, f=2$"):
        c.check("r", 4, 2)


def test_drop_nonfinite_rows_fast_path_returns_input_itself():
    x = torch.randn(4, 3)
    out, f = drop_nonfinite_rows("r", x, 2)
    assert out is x and f == 2


def test_drop_nonfinite_rows_keeps_rows_whose_sum_overflows():
    # each entry is finite, the row sum overflows float32: the exact check keeps the row
    x = torch.tensor([[3e38, 3e38], [1.0, 2.0]])
    assert torch.isinf(x.sum(dim=1)[0])
    out, f = drop_nonfinite_rows("r", x, 0)
    assert out is x and f == 0


def test_drop_nonfinite_rows_removes_bad_rows_and_counts_them():
    x = torch.arange(12.0).reshape(6, 2)
    x[1, 0] = float("nan")
    x[4, 1] = -float("inf")
    out, f = drop_nonfinite_rows("r", x, 3)
    assert f == 1
    assert torch.equal(out, x[[0, 2, 3, 5]])


def test_drop_nonfinite_rows_too_many_lists_rows():
    x = torch.zeros(5, 2)
    x[0, 0] = float("inf")
    x[3, 1] = float("nan")
    with pytest.raises(NonFiniteError, match=r"^r: 2 input rows contain NaN/Inf \(rows \[0, 3\]\).*f=1"):
        drop_nonfinite_rows("r", x, 1)


def test_check_output_flags_overflow():
    assert check_output("r", torch.ones(3)).sum() == 3
    with pytest.raises(NonFiniteError, match="r: the output overflowed"):
        check_output("r", torch.tensor([1.0, float("inf")]))


def test_rule_output_overflow_is_an_error_not_inf():
    x = torch.full((2, 3), 3e38)  # finite inputs whose float32 mean overflows
    from byzantium.aggregators import mean

    with pytest.raises(NonFiniteError, match="mean: the output overflowed"):
        mean(x)
    # the median does not add: no overflow
    assert torch.equal(median(x), x[0])
