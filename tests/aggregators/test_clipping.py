"""Centered clipping against a direct implementation of the paper's update."""

from __future__ import annotations

import pytest
import torch

from byzantium.aggregators import ConstraintError, centered_clipping, get, median


def direct(x: torch.Tensor, v: torch.Tensor, tau: float, iterations: int) -> torch.Tensor:
    """v <- v + mean_i (x_i - v) min(1, tau/||x_i - v||), computed literally in float64."""
    x, v = x.double(), v.double()
    for _ in range(iterations):
        diff = x - v
        norm = diff.norm(dim=1)
        scale = torch.where(norm > tau, tau / norm, torch.ones_like(norm))
        v = v + (diff * scale[:, None]).mean(0)
    return v


@pytest.fixture
def x() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(11, 40, generator=g, dtype=torch.float64)
    x[:3] += 30.0  # three far inputs get clipped
    return x


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_matches_direct_update_from_median(x, dtype, tol):
    xd = x.to(dtype)
    out = centered_clipping(xd, f=3, tau=2.0, iterations=4)
    assert out.dtype == dtype and out.shape == (40,)
    assert torch.allclose(out.double(), direct(xd, median(xd).double(), 2.0, 4), atol=tol)


def test_matches_direct_update_from_start(x):
    start = torch.full((40,), 0.5, dtype=torch.float64)
    out = centered_clipping(x, tau=1.0, iterations=3, start=start)
    assert torch.allclose(out, direct(x, start, 1.0, 3), atol=1e-12)


def test_default_tau_is_median_distance_from_start(x):
    v0 = median(x)
    tau = float((x - v0).norm(dim=1).median())
    assert torch.allclose(centered_clipping(x, f=3), direct(x, v0, tau, 3), atol=1e-12)


def test_large_tau_one_step_is_the_mean(x):
    assert torch.allclose(centered_clipping(x, tau=1e9, iterations=1), x.mean(0), atol=1e-12)


def test_small_tau_moves_at_most_tau_per_iteration(x):
    start = torch.zeros(40, dtype=torch.float64)
    out = centered_clipping(x, tau=0.01, iterations=3, start=start)
    assert float(out.norm()) <= 3 * 0.01 + 1e-12


def test_byzantine_influence_is_bounded():
    g = torch.Generator().manual_seed(1)
    honest = torch.randn(9, 20, generator=g, dtype=torch.float64) * 0.1
    x = torch.cat([honest, torch.full((2, 20), 1e6, dtype=torch.float64)])
    start = honest.mean(0)
    out = centered_clipping(x, f=2, tau=0.5, iterations=3, start=start)
    # per iteration the two far inputs move v by at most 2 * tau / n
    assert float((out - start).norm()) <= 3 * (2 * 0.5 / 11 + 0.5 * 9 / 11)
    assert float((out - start).norm()) < 0.3


def test_identical_inputs_return_the_input():
    row = torch.randn(30, dtype=torch.float64)
    x = row.expand(6, -1).clone()
    assert torch.allclose(centered_clipping(x, tau=1.0), row, atol=1e-14)
    assert torch.allclose(centered_clipping(x), row, atol=1e-14)  # tau default 0: no move


def test_via_get_with_parameters(x):
    out = get("centered_clipping", f=2, tau=2.0, iterations=2)(x)
    assert torch.allclose(out, direct(x, median(x), 2.0, 2), atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tau": 0.0}, "tau must be a positive finite number, got tau=0.0"),
        ({"tau": float("inf")}, "tau must be a positive finite number"),
        ({"tau": "1"}, "tau must be a positive finite number"),
        ({"iterations": 0}, "iterations must be an integer >= 1, got iterations=0"),
        ({"iterations": 2.0}, "iterations must be an integer >= 1"),
        ({"start": torch.zeros(3)}, r"start must be a \(40,\) tensor like one input row, got \(3,\)"),
        ({"start": [0.0] * 40}, "start must be a \\(40,\\) tensor like one input row, got list"),
        ({"start": torch.full((40,), float("nan"))}, "start must be finite"),
        ({"f": 6}, r"^centered_clipping: requires n > 2f, got n=11, f=6$"),
    ],
)
def test_parameter_errors(x, kwargs, match):
    with pytest.raises(ConstraintError, match=match):
        centered_clipping(x, **kwargs)


def test_generic_path_matches_cpu_path(x, monkeypatch):
    """The torch-only path (other devices) computes the same as the blocked CPU path."""
    from byzantium.aggregators import _select, clipping

    fast = [centered_clipping(x, f=3, tau=2.0), centered_clipping(x, tau=1.0, start=x[5])]
    monkeypatch.setattr(clipping, "uses_numpy_path", lambda t: False)
    monkeypatch.setattr(_select, "uses_numpy_path", lambda t: False)
    slow = [centered_clipping(x, f=3, tau=2.0), centered_clipping(x, tau=1.0, start=x[5])]
    for a, b in zip(fast, slow):
        assert torch.allclose(a, b, atol=1e-12)


@pytest.mark.parametrize("scale", [1e25, 1e35])
def test_inputs_whose_distances_overflow_float32_get_zero_weight(scale):
    g = torch.Generator().manual_seed(2)
    honest = torch.randn(8, 50, generator=g)
    x = torch.cat([honest, torch.full((3, 50), scale)])
    out = centered_clipping(x, f=3, tau=1.0)
    assert bool(torch.isfinite(out).all())
    # the far rows contribute nothing: same as clipping with their weight set to 0, i.e. the
    # direct update on the honest rows scaled by 8/11
    v = median(x).double()
    for _ in range(3):
        diff = honest.double() - v
        norm = diff.norm(dim=1)
        v = v + (diff * torch.clamp(1.0 / norm, max=1.0)[:, None]).sum(0) / 11
    assert torch.allclose(out.double(), v, atol=1e-4)
