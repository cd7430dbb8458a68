"""Properties every registered rule must have (part B's rules included as they register):
permutation invariance, a finite (d,) output of the input's dtype and device, idempotence on
identical inputs, clear errors on malformed stacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from byzantium.aggregators import REGISTRY, AggregatorError, get

N, D = 11, 9
RULES = sorted(name for name, e in REGISTRY.items() if e.kind == "rule")

# Rules whose output depends on the row order by design, with the permutations they allow.
ORDER_DEPENDENT = {
    # consecutive groups in the given order (pass a generator for a random grouping)
    "median_of_means": "groups",
    # the pivot (row 0) is the caller's own trusted vector: only the others may be permuted
    "monna": "pivot",
}


def largest_f(name: str, n: int = N, cap: int = 2) -> int:
    entry = REGISTRY[name]
    if "f" not in entry.params:
        return 0
    return max(f for f in range(cap + 1) if entry.constraint.ok(n, f))


def call(name: str, x: torch.Tensor) -> torch.Tensor:
    f = largest_f(name, x.shape[0])
    return REGISTRY[name].fn(x, f=f) if "f" in REGISTRY[name].params else REGISTRY[name].fn(x)


def data(dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g, dtype=dtype)
    x[1] += 8.0  # one outlier makes selection rules actually select
    return x


@pytest.mark.parametrize("name", RULES)
def test_permutation_invariance(name):
    x = data(torch.float64)
    g = torch.Generator().manual_seed(1)
    kind = ORDER_DEPENDENT.get(name)
    if kind == "groups":
        # with groups of one row each the grouping is order-free: MoM is then the median
        out = REGISTRY[name].fn(x, f=2, groups=N)
        p = torch.randperm(N, generator=g)
        assert torch.allclose(REGISTRY[name].fn(x[p], f=2, groups=N), out, atol=1e-12)
        return
    ref = call(name, x)
    for _ in range(3):
        if kind == "pivot":
            p = torch.cat([torch.zeros(1, dtype=torch.long), 1 + torch.randperm(N - 1, generator=g)])
        else:
            p = torch.randperm(N, generator=g)
        assert torch.allclose(call(name, x[p]), ref, atol=1e-10), name


@pytest.mark.parametrize("name", RULES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_output_with_dtype_device_and_shape(name, dtype):
    x = data(dtype)
    out = call(name, x)
    assert isinstance(out, torch.Tensor)
    assert out.shape == (D,) and out.dtype == dtype and out.device == x.device
    assert bool(torch.isfinite(out).all())
    assert out.data_ptr() != x.data_ptr() or out.numel() == 0
    via_get = get(name, f=largest_f(name))(x)
    assert torch.equal(via_get, out) or torch.allclose(via_get, out, atol=1e-6)


@pytest.mark.parametrize("name", RULES)
def test_float32_close_to_float64(name):
    x64 = data(torch.float64)
    out32 = call(name, x64.float()).double()
    out64 = call(name, x64)
    scale = float(x64.abs().max())
    assert torch.allclose(out32, out64, atol=1e-4 * scale, rtol=1e-4), name


@pytest.mark.parametrize("name", RULES)
def test_identical_inputs_return_that_input(name):
    row = torch.randn(D, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    x = row.expand(N, -1).clone()
    assert torch.allclose(call(name, x), row, atol=1e-9), name


@pytest.mark.parametrize("name", RULES)
def test_input_left_untouched(name):
    x = data(torch.float64)
    before = x.clone()
    call(name, x)
    assert torch.equal(x, before)


@pytest.mark.parametrize("name", RULES)
@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.zeros(D), r"stacked \(n, d\) tensor, got shape"),
        (torch.zeros(N, D, dtype=torch.int64), "expected float32 or float64 gradients, got torch.int64"),
        (np.zeros((N, D)), "expected a torch.Tensor of shape \\(n, d\\), got ndarray"),
    ],
    ids=["1d", "int", "numpy"],
)
def test_malformed_stacks_are_rejected_by_name(name, bad, match):
    with pytest.raises(AggregatorError, match=rf"^{name}: .*{match}"):
        REGISTRY[name].fn(bad)
    with pytest.raises(AggregatorError, match=rf"^{name}: .*{match}"):
        get(name)(bad)
