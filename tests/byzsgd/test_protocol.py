import itertools
import math

import numpy as np
import pytest
import torch

from byzantium import aggregators
from byzantium.attacks import ServerAttackContext, get_server_attack
from byzantium.byzsgd import (
    choose_senders,
    combine_models,
    dmc_gather,
    drift,
    lipschitz_accept,
    lipschitz_coefficient,
    outliers_accept,
    outliers_bound,
    predicted_model,
    push_history,
    server_aggregate,
    sgd_step,
)


def test_server_aggregate_is_mda():
    assert server_aggregate(torch.tensor([[0.0], [1.0], [2.0], [10.0], [11.0]]), 2).item() == 1.0
    g = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(server_aggregate(g, 2), aggregators.mda(g, f=2))
    assert torch.allclose(server_aggregate(g, 0), g.mean(0))
    theta = torch.tensor([1.0, 2.0])
    assert torch.equal(sgd_step(theta, torch.tensor([10.0, -10.0]), 0.1), torch.tensor([0.0, 3.0]))


def test_combine_models_midpoint():
    assert combine_models(torch.tensor([[1.0], [2.0], [3.0], [10.0]]), 1).item() == 2.5


def test_dmc_worked_example():
    """§2.6: correct 0, 1, 2, 3 and a Byzantine 100 to everyone, q_ps = 4."""
    byz = torch.tensor([[100.0]])
    assert dmc_gather(torch.tensor([0.0]), torch.cat([byz, torch.tensor([[1.0], [2.0]])]), 1).item() == 1.5
    assert dmc_gather(torch.tensor([3.0]), torch.cat([byz, torch.tensor([[2.0], [1.0]])]), 1).item() == 2.5
    results = []
    for own in range(4):
        others = [v for v in range(4) if v != own]
        for pair in itertools.combinations(others, 2):  # every quorum: own, 2 correct, the Byzantine
            rec = torch.tensor([[100.0]] + [[float(v)] for v in pair])
            results.append(dmc_gather(torch.tensor([float(own)]), rec, 1).item())
    assert min(results) == 1.5 and max(results) == 2.5  # diameter 3 -> 1


@pytest.mark.parametrize("behaviour", ["random", "equivocation", "reverse", "alie"])
def test_dmc_box_invariant(behaviour):
    """Post-gather correct models stay in the coordinate box of the correct pre-gather ones, for
    any quorum containing the own model, with per-recipient (equivocating) Byzantine models."""
    gen = torch.Generator().manual_seed(1)
    atk = get_server_attack(behaviour, **({"scale": 50.0} if behaviour == "equivocation" else {}))
    n_ps, f_ps, d = 5, 1, 6
    for trial in range(30):
        C = torch.randn(n_ps - f_ps, d, generator=gen) * (1 + trial)
        ctx = ServerAttackContext(step=trial, kind="gather", correct=C, reference=C.mean(0),
                                  recipients=n_ps - f_ps, generator=gen)
        B = atk(ctx)
        lo, hi = C.min(0).values, C.max(0).values
        for s in range(n_ps - f_ps):
            chosen = choose_senders(range(n_ps), [n_ps - 1], n_ps - f_ps, "adversarial", gen, must=[s])
            assert s in chosen and n_ps - 1 in chosen
            rec = torch.stack([B[s] if o == n_ps - 1 else C[o] for o in chosen if o != s])
            out = dmc_gather(C[s], rec, f_ps)
            assert torch.all(out >= lo) and torch.all(out <= hi)


def test_drift():
    assert drift(torch.zeros(3, 4)) == 0.0
    assert drift(torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]])) == 5.0
    assert drift(torch.ones(1, 3)) == 0.0


def test_lipschitz_filter():
    t = torch.tensor
    assert lipschitz_coefficient(t([1.0, 0.0]), t([0.0, 0.0]), t([0.0, 3.0]), t([0.0, 1.0])) == 2.0
    assert lipschitz_coefficient(t([1.0]), t([1.0]), t([5.0]), t([0.0])) is None  # guard: accept
    assert lipschitz_accept(None, [1.0], 5, 1)
    hist = [1.0, 2.0, 3.0, 4.0]
    # numpy linear percentile 80 of [1, 2, 3, 4, 100] = 4 + 0.2 * 96 = 23.2
    assert np.isclose(np.percentile([1, 2, 3, 4, 100], 80), 23.2)
    assert not lipschitz_accept(100.0, hist, 5, 1)
    assert lipschitz_accept(2.5, hist, 5, 1)
    assert not lipschitz_accept(math.inf, hist, 5, 1)
    h: list[float] = []
    for v in range(100):
        push_history(h, float(v))
    assert h == [float(v) for v in range(50, 100)]  # trimmed to the last 50 at 100 entries


def test_outliers_filter():
    # (3T + 2)(n_w - f_w) / (4 f_w) + 2 s with T = 3, n_w = 7, f_w = 2, s = 1: 55/8 + 2
    assert math.isclose(outliers_bound(0.1, 2.0, 3, 7, 2, 1), 0.1 * 2.0 * (55 / 8 + 2))
    assert outliers_bound(0.1, 2.0, 3, 7, 0, 1) == math.inf
    theta_prev, g_prev = torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0])
    pred = predicted_model(theta_prev, g_prev, 0.1)
    assert torch.allclose(pred, torch.tensor([0.9, 1.0]))
    bound = outliers_bound(0.1, 1.0, 3, 7, 2, 0)
    honest = pred + torch.tensor([0.0, 0.05])
    assert outliers_accept(honest, pred, bound)
    assert not outliers_accept(-100 * honest, pred, bound)
    assert not outliers_accept(torch.tensor([math.nan, 0.0]), pred, bound)


def test_scheduler():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        ch = choose_senders(range(7), [5, 6], 5, "adversarial", g)
        assert len(ch) == 5 and {5, 6} <= set(ch)
        ch = choose_senders(range(7), [5, 6], 5, "random", g, must=[2])
        assert len(ch) == 5 and 2 in ch and ch == sorted(set(ch))
    assert choose_senders(range(7), [5, 6], 5, "first", g) == [0, 1, 2, 3, 4]
    assert choose_senders([0, 1], [], 5, "random", g) == [0, 1]  # fewer available than q
    seen = {tuple(choose_senders(range(5), [], 3, "random", g)) for _ in range(200)}
    assert len(seen) == 10  # every 3-subset of 5 occurs
