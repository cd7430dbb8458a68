"""Delay models, Byzantine timing and server arrival policies."""

from __future__ import annotations

import math

import pytest
import torch

from byzantium.stragglers import (
    DELAY_MODELS,
    ExponentialDelay,
    FirstK,
    NoDelay,
    ParetoDelay,
    ShiftedExponentialDelay,
    SlowSetDelay,
    StragglerError,
    apply_byzantine_timing,
    arrivals,
    deadline,
    first_k,
    make_delay_model,
    make_policy,
    wait_all,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


SPECS = [
    "none",
    {"model": "exponential", "rate": 2.0, "base_time": 0.5},
    {"model": "shifted_exponential", "mu": 1.5},
    {"model": "pareto", "alpha": 1.5, "scale": 2.0},
    {"model": "slow_set", "workers": [0, 2], "factor": 4, "transient_prob": 0.2,
     "transient_factor": 3, "base": {"model": "shifted_exponential", "mu": 2}},
]


# ---------------------------------------------------------------- sampling


@pytest.mark.parametrize("spec", SPECS)
def test_sampling_is_determined_by_the_generator(spec):
    model = make_delay_model(spec)
    a = model.sample(3, gen(7), 9)
    b = model.sample(3, gen(7), 9)
    assert a.dtype == torch.float64 and a.shape == (9,)
    assert torch.equal(a, b)
    assert bool((a >= 0).all())
    if model.name != "none":
        assert not torch.equal(a, model.sample(3, gen(8), 9))
    # consecutive steps from one generator differ but replay identically
    g1, g2 = gen(1), gen(1)
    s1 = [model.sample(t, g1, 9) for t in range(3)]
    s2 = [model.sample(t, g2, 9) for t in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(s1, s2))


def test_to_spec_round_trips():
    for spec in SPECS:
        model = make_delay_model(spec)
        assert make_delay_model(model.to_spec()) == model


def test_parameters_do_not_change_how_many_values_are_drawn():
    # same uniforms underneath: rate only rescales, and the generator ends in the same state
    g1, g2 = gen(4), gen(4)
    a = ExponentialDelay(rate=1.0).sample(0, g1, 6)
    b = ExponentialDelay(rate=4.0).sample(0, g2, 6)
    torch.testing.assert_close(a, 4.0 * b)
    assert torch.equal(g1.get_state(), g2.get_state())


def test_none_is_base_time_times_load():
    t = NoDelay(base_time=0.25).sample(0, gen(), 4, load=[1, 2, 0, 4])
    assert t.tolist() == [0.25, 0.5, 0.0, 1.0]


@pytest.mark.parametrize("spec", SPECS[1:4])
def test_load_multiplies_latency(spec):
    model = make_delay_model(spec)
    load = torch.tensor([1.0, 3.0, 2.0, 5.0])
    torch.testing.assert_close(model.sample(0, gen(2), 4, load=load), model.sample(0, gen(2), 4) * load)


N = 200_000


def test_exponential_mean_and_variance():
    t = ExponentialDelay(rate=2.0, base_time=3.0).sample(0, gen(11), N)
    mean = 3.0 / 2.0
    assert abs(t.mean().item() - mean) < 5 * mean / math.sqrt(N)  # sd = mean for Exp
    assert abs(t.std().item() - mean) / mean < 0.02
    assert ExponentialDelay(rate=2.0, base_time=3.0).mean() == mean


def test_shifted_exponential_mean_and_minimum():
    model = ShiftedExponentialDelay(mu=0.5, base_time=2.0)
    t = model.sample(0, gen(12), N)
    assert model.mean() == 2.0 * (1 + 1 / 0.5)
    assert abs(t.mean().item() - 6.0) < 5 * (2.0 / 0.5) / math.sqrt(N)
    assert t.min().item() >= 2.0  # never faster than the base time


def test_pareto_mean_tail_and_minimum():
    model = ParetoDelay(alpha=3.0, scale=2.0, base_time=0.5)
    t = model.sample(0, gen(13), N)
    mean = 0.5 * 3.0 * 2.0 / 2.0
    sd = 0.5 * math.sqrt(2.0**2 * 3.0 / ((3.0 - 1) ** 2 * (3.0 - 2)))
    assert model.mean() == mean
    assert abs(t.mean().item() - mean) < 6 * sd / math.sqrt(N)
    assert t.min().item() >= 0.5 * 2.0
    # survival function P(P > 2 scale) = 2^-alpha
    assert abs((t > 2.0).double().mean().item() - 2.0**-3) < 0.003
    # heavy tail alpha = 1.5: infinite variance, median = scale * 2^(1/alpha)
    heavy = ParetoDelay(alpha=1.5, scale=1.0)
    assert abs(heavy.sample(0, gen(14), N).median().item() - 2 ** (1 / 1.5)) < 0.02
    assert ParetoDelay(alpha=1.0).mean() == math.inf


def test_slow_set_slows_exactly_those_workers():
    assert SlowSetDelay(workers=(1, 3), factor=5.0).sample(0, gen(), 5).tolist() == [1, 5, 1, 5, 1]
    base = {"model": "exponential", "rate": 1.0}
    slow = make_delay_model({"model": "slow_set", "workers": [4, 0], "factor": 3, "base": base})
    s = slow.sample(2, gen(5), 6)
    b = make_delay_model(base).sample(2, gen(5), 6)
    mult = torch.tensor([3.0, 1, 1, 1, 3, 1], dtype=torch.float64)
    torch.testing.assert_close(s, b * mult)


def test_slow_set_transient_stragglers():
    always = SlowSetDelay(workers=(), transient_prob=1.0, transient_factor=7.0)
    assert always.sample(0, gen(), 4).tolist() == [7.0] * 4
    some = SlowSetDelay(workers=(0,), factor=2.0, transient_prob=0.3, transient_factor=10.0)
    t = some.sample(0, gen(3), 50_000)
    assert set(t[1:].unique().tolist()) == {1.0, 10.0}
    assert set(t[:1].tolist()) <= {2.0, 20.0}
    assert abs((t[1:] == 10.0).double().mean().item() - 0.3) < 0.01


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "spec, match",
    [
        ("gamma", "make_delay_model: unknown delay model 'gamma'; choose one of: none, exponential, "
                    "shifted_exponential, pareto, slow_set"),
        ({"rate": 1.0}, "needs a 'model' key"),
        ({"model": "exponential", "rate": 0.0}, r"exponential.rate: must be > 0, got 0.0"),
        ({"model": "exponential", "rate": -1.0}, r"exponential.rate: must be > 0, got -1.0"),
        ({"model": "exponential", "rate": "fast"}, "exponential.rate: expected a number, got 'fast'"),
        ({"model": "exponential", "rate": True}, "exponential.rate: expected a number, got True"),
        ({"model": "exponential", "rat": 1.0}, r"unknown parameter\(s\) \['rat'\] for model 'exponential'; "
                                                 r"allowed: \['rate', 'base_time'\]"),
        ({"model": "shifted_exponential", "mu": 0}, "shifted_exponential.mu: must be > 0, got 0"),
        ({"model": "pareto", "alpha": 0.0}, "pareto.alpha: must be > 0, got 0.0"),
        ({"model": "pareto", "alpha": 2.0, "scale": -1}, "pareto.scale: must be > 0, got -1"),
        ({"model": "none", "base_time": -0.1}, "none.base_time: must be >= 0, got -0.1"),
        ({"model": "none", "base_time": math.inf}, "none.base_time: must be a finite number, got inf"),
        ({"model": "slow_set", "factor": 2}, r"model 'slow_set' needs the parameter\(s\) \['workers'\]"),
        ({"model": "slow_set", "workers": [1], "factor": 0.5}, r"slow_set.factor: must be >= 1 \(a slowdown\), got 0.5"),
        ({"model": "slow_set", "workers": [1, 1]}, "distinct"),
        ({"model": "slow_set", "workers": [-1]}, ">= 0"),
        ({"model": "slow_set", "workers": [1], "transient_prob": 1.5}, r"slow_set.transient_prob: must be in \[0, 1\], got 1.5"),
        ({"model": "slow_set", "workers": [1], "transient_factor": 0.9}, "slow_set.transient_factor: must be >= 1"),
        ({"model": "slow_set", "workers": [1], "base": {"model": "slow_set", "workers": [0]}},
         "must not itself be a slow_set"),
        ({"model": "slow_set", "workers": [1], "base": {"model": "weibull"}}, "unknown delay model"),
        (3, "spec must be a name, a mapping or a delay model"),
    ],
)
def test_make_delay_model_errors(spec, match):
    with pytest.raises(StragglerError, match=match):
        make_delay_model(spec)


def test_parameters_are_checked_when_a_model_is_built_directly():
    with pytest.raises(StragglerError, match="exponential.rate: expected a number, got 'fast'"):
        ExponentialDelay(rate="fast")
    with pytest.raises(StragglerError, match=r"pareto.alpha: must be > 0, got -2"):
        ParetoDelay(alpha=-2)
    with pytest.raises(StragglerError, match="workers must be a list of worker ids"):
        SlowSetDelay(workers="0,1")
    with pytest.raises(StragglerError, match=r"first_k.k: expected an integer, got 2.0"):
        FirstK(2.0)
    # slow_set's base may be a spec: the same model as a built one
    assert SlowSetDelay(workers=[3, 1], base={"model": "pareto", "alpha": 3}) == SlowSetDelay(
        workers=(1, 3), base=ParetoDelay(alpha=3))


def test_a_registered_delay_model_is_built_from_its_spec(monkeypatch):
    from dataclasses import dataclass, field

    from byzantium.stragglers import delay_model
    from byzantium.stragglers.checks import bounded
    from byzantium.stragglers.delays import DelayModelBase

    monkeypatch.setattr(DELAY_MODELS, "_entries", dict(DELAY_MODELS._entries))
    monkeypatch.setattr(DELAY_MODELS, "_params", dict(DELAY_MODELS._params))

    @delay_model
    @dataclass(frozen=True)
    class ConstantDelay(DelayModelBase):
        seconds: float = bounded(2.0, gt=0)
        name: str = field(default="constant_for_test", init=False)

        def sample(self, step, generator, num_workers, load=None):
            return torch.full((num_workers,), float(self.seconds), dtype=torch.float64)

    model = make_delay_model({"model": "constant_for_test", "seconds": 0.5})
    assert model.sample(0, gen(), 3).tolist() == [0.5] * 3
    assert model.to_spec() == {"model": "constant_for_test", "seconds": 0.5}
    assert make_delay_model({"model": "slow_set", "workers": [1], "factor": 4,
                             "base": model.to_spec()}).sample(0, gen(), 3).tolist() == [0.5, 2.0, 0.5]
    with pytest.raises(StragglerError, match=r"constant_for_test.seconds: must be > 0, got 0"):
        make_delay_model({"model": "constant_for_test", "seconds": 0})
    with pytest.raises(StragglerError, match=r"unknown parameter\(s\) \['rate'\] for model 'constant_for_test'; "
                                                 r"allowed: \['seconds'\]"):
        make_delay_model({"model": "constant_for_test", "rate": 1})


def test_worker_ids_out_of_range():
    spec = {"model": "slow_set", "workers": [2, 6]}
    with pytest.raises(StragglerError, match=r"out-of-range ids \[6\]"):
        make_delay_model(spec, num_workers=5)
    model = make_delay_model(spec)
    with pytest.raises(StragglerError, match=r"num_workers=5, got out-of-range ids \[6\]"):
        model.sample(0, gen(), 5)
    assert model.sample(0, gen(), 7).shape == (7,)


def test_sample_argument_errors():
    m = ExponentialDelay()
    with pytest.raises(StragglerError, match="load must have shape"):
        m.sample(0, gen(), 3, load=[1.0, 2.0])
    with pytest.raises(StragglerError, match="load must be finite and >= 0"):
        m.sample(0, gen(), 2, load=[1.0, -2.0])
    with pytest.raises(StragglerError, match="num_workers must be >= 1"):
        m.sample(0, gen(), 0)
    with pytest.raises(StragglerError, match="step must be >= 0"):
        m.sample(-1, gen(), 3)
    with pytest.raises(StragglerError, match="generator must be a torch.Generator"):
        m.sample(0, 42, 3)


# ---------------------------------------------------------------- arrivals


def _brute_order(t: list[float]) -> list[int]:
    return sorted(range(len(t)), key=lambda i: (t[i], i))


def test_first_k_picks_the_k_smallest_with_id_tie_breaks():
    res = arrivals(torch.tensor([3.0, 1.0, 2.0, 1.0, 5.0]), first_k(3))
    assert res.order.tolist() == [1, 3, 2, 0, 4]
    assert res.received.tolist() == [False, True, True, True, False]
    assert res.accepted.tolist() == [1, 3, 2]
    assert res.late.tolist() == [0, 4]
    assert res.step_time == 2.0
    # a tie straddling the cut goes to the smaller id
    res = arrivals(torch.tensor([1.0, 2.0, 2.0, 2.0, 0.0]), FirstK(3))
    assert res.accepted.tolist() == [4, 0, 1] and res.late.tolist() == [2, 3]
    assert res.step_time == 2.0


def test_first_k_matches_brute_force_on_random_ties():
    g = gen(21)
    for _ in range(50):
        K = int(torch.randint(1, 12, (1,), generator=g))
        t = torch.randint(0, 4, (K,), generator=g).double()
        k = int(torch.randint(1, K + 1, (1,), generator=g))
        res = arrivals(t, first_k(k))
        want = _brute_order(t.tolist())
        assert res.order.tolist() == want
        assert sorted(torch.nonzero(res.received).flatten().tolist()) == sorted(want[:k])
        assert res.late.tolist() == want[k:]
        assert res.step_time == t[want[k - 1]].item()
        assert int(res.received.sum()) == k


def test_wait_all_and_deadline():
    t = torch.tensor([3.0, 1.0, 2.0, 1.0, 5.0])
    res = arrivals(t, wait_all())
    assert bool(res.received.all()) and res.step_time == 5.0 and res.late.numel() == 0
    res = arrivals(t, deadline(1.5))  # server waits until the deadline
    assert res.accepted.tolist() == [1, 3] and res.step_time == 1.5 and res.late.tolist() == [2, 0, 4]
    res = arrivals(t, deadline(2.0))  # inclusive
    assert res.accepted.tolist() == [1, 3, 2] and res.step_time == 2.0
    res = arrivals(t, deadline(0.5))  # nothing by the deadline: wait for the first message
    assert res.accepted.tolist() == [1] and res.step_time == 1.0
    res = arrivals(t, deadline(10.0))  # everyone in early: no need to wait for the deadline
    assert bool(res.received.all()) and res.step_time == 5.0


def test_crashed_workers_and_policy_errors():
    t = torch.tensor([1.0, math.inf, 2.0])
    res = arrivals(t, first_k(2))
    assert res.accepted.tolist() == [0, 2] and res.late.tolist() == [1]
    with pytest.raises(StragglerError, match="never arrive"):
        arrivals(t, wait_all())
    with pytest.raises(StragglerError, match="fewer than k=3"):
        arrivals(t, first_k(3))
    with pytest.raises(StragglerError, match="k must be <= K, got k=4, K=3"):
        arrivals(t, first_k(4))
    with pytest.raises(StragglerError, match="times must be >= 0 and not NaN"):
        arrivals(torch.tensor([1.0, math.nan]), wait_all())
    with pytest.raises(StragglerError, match="first_k.k: must be >= 1, got 0"):
        first_k(0)
    with pytest.raises(StragglerError, match="deadline.t: must be >= 0, got -1.0"):
        deadline(-1.0)
    with pytest.raises(StragglerError, match="unknown server policy 'first'"):
        make_policy("first")
    with pytest.raises(StragglerError, match=r"takes exactly the parameters \['k'\]"):
        make_policy({"policy": "first_k"})
    assert make_policy({"policy": "first_k", "k": 4}) == FirstK(4)
    assert make_policy("wait_all") == wait_all()
    assert arrivals(t, {"policy": "deadline", "t": 1.5}).accepted.tolist() == [0]


# ---------------------------------------------------------------- Byzantine timing


def test_byzantine_timing_policies():
    t = torch.tensor([0.5, 2.0, 0.7, 1.0, 3.0, 0.9], dtype=torch.float64)
    byz = [4, 1]
    rush = apply_byzantine_timing(t, byz, "rushing")
    res = arrivals(rush, first_k(3))
    assert res.order[:2].tolist() == [1, 4]  # Byzantines first, ties by id
    assert res.accepted.tolist() == [1, 4, 0]
    assert torch.equal(rush[[0, 2, 3, 5]], t[[0, 2, 3, 5]])  # honest untouched
    assert torch.equal(apply_byzantine_timing(t, byz, "like_honest"), t)
    mask = torch.tensor([False, False, True, False, False, True])
    slow = apply_byzantine_timing(t, mask, "slowest")
    order = arrivals(slow, wait_all()).order.tolist()
    assert order[-2:] == [2, 5] and set(order[:-2]) == {0, 1, 3, 4}
    assert slow[2].item() > t.max().item()
    assert torch.equal(t, torch.tensor([0.5, 2.0, 0.7, 1.0, 3.0, 0.9], dtype=torch.float64))
    with pytest.raises(StragglerError, match="unknown policy 'early'"):
        apply_byzantine_timing(t, byz, "early")
    with pytest.raises(StragglerError, match=r"byzantine ids must be in \[0, 5\]"):
        apply_byzantine_timing(t, [6], "rushing")
