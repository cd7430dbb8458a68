"""Each scheme end to end on a tiny model; exactness of DRACO; votes that outvote a minority."""

from __future__ import annotations

import re

import pytest
import torch

from byzantium.runtime.job import build_job
from byzantium.runtime.simulator import SimulatedCluster
from byzantium.runtime.run import run_training



def _train(cfg, tmp_path, name, **kw):
    out = run_training(cfg, tmp_path / name, progress=False, **kw)
    return out, torch.nn.utils.parameters_to_vector(out["model"].parameters()).detach()


SCHEMES = [
    ({"name": "vanilla"}, 9),
    ({"name": "robust", "aggregator": "trimmed_mean"}, 9),
    ({"name": "robust", "aggregator": "nnm+krum"}, 9),
    ({"name": "draco_repetition", "s": 1}, 9),
    ({"name": "draco_cyclic", "s": 2}, 9),
    ({"name": "detox", "r": 3, "aggregator": "median"}, 9),
    ({"name": "byzshield", "assignment": "mols", "r": 3, "aggregator": "median"}, 15),
    ({"name": "byzshield", "assignment": "ramanujan", "m": 3, "s": 3, "aggregator": "median"}, 9),
    ({"name": "dstar", "k": 7, "lam": 3.0}, 9),
]


@pytest.mark.parametrize("scheme, K", SCHEMES, ids=[s["name"] + str(i) for i, (s, _) in enumerate(SCHEMES)])
def test_each_scheme_trains_a_few_steps(scheme, K, tmp_path, logistic_data, make_cfg) -> None:
    cfg = make_cfg(workers=K, scheme=scheme, attack={"name": "alie", "q": 2},
                   training={"steps": 4, "batch_size": 90 if K == 9 else 75, "eval_every": 2})
    out, params = _train(cfg, tmp_path, "run", dataset=logistic_data)
    assert out["steps_completed"] == 4 and out["completed"]
    assert torch.isfinite(params).all()
    assert 0.0 <= out["final_test_accuracy"] <= 1.0
    for f in ("config.yaml", "metrics.csv", "summary.json", "accuracy.png"):
        assert (tmp_path / "run" / f).exists()


@pytest.mark.parametrize("attack", [
    {"name": "reversed"},
    {"name": "constant", "params": {"c": 1e6}},
    {"name": "alie"},
    {"name": "gaussian", "params": {"std": 100.0}},
    {"name": "label_flip"},
])
@pytest.mark.parametrize("scheme, K, q", [
    ({"name": "draco_repetition", "s": 1}, 9, 1),
    ({"name": "draco_cyclic", "s": 2}, 7, 2),
])
def test_draco_trains_the_adversary_free_model(scheme, K, q, attack, tmp_path, logistic_data, make_cfg) -> None:
    """With up to s adversaries DRACO's model equals a no-attack vanilla run (float tolerance)."""
    steps = {"steps": 8, "batch_size": 63 if K == 7 else 90, "eval_every": 4}
    clean = make_cfg(workers=K, scheme={"name": "vanilla"}, training=steps)
    _, ref = _train(clean, tmp_path, "vanilla", dataset=logistic_data)
    cfg = make_cfg(workers=K, scheme=scheme, training=steps, attack={**attack, "q": q})
    out, got = _train(cfg, tmp_path, "draco", dataset=logistic_data)
    assert out["q"] == q
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scheme, K", [
    ({"name": "byzshield", "r": 3, "aggregator": "median"}, 15),
    ({"name": "detox", "r": 3, "aggregator": "median"}, 9),
])
def test_votes_outvote_a_byzantine_minority(scheme, K, tmp_path, logistic_data, make_cfg) -> None:
    """q = 1 < r' = 2: every Byzantine copy loses its vote; the model equals the clean run's."""
    steps = {"steps": 6, "batch_size": 75 if K == 15 else 90, "eval_every": 3}
    _, ref = _train(make_cfg(workers=K, scheme=scheme, training=steps), tmp_path, "clean",
                    dataset=logistic_data)
    cfg = make_cfg(workers=K, scheme=scheme, training=steps,
                   attack={"name": "constant", "q": 1, "params": {"c": -1e4}})
    out, got = _train(cfg, tmp_path, "attacked", dataset=logistic_data)
    assert out["mean_distorted_files"] == 0
    assert torch.equal(got, ref)


def test_byzshield_worst_case_placement_distorts_c_max_files(logistic_data, make_cfg) -> None:
    cfg = make_cfg(workers=15, scheme={"name": "byzshield", "r": 3, "aggregator": "median"},
                   attack={"name": "constant", "q": 3}, training={"batch_size": 75})
    cluster = SimulatedCluster(build_job(cfg, dataset=logistic_data))
    assert cluster.scheme.c_max >= 1 and cluster.scheme.aggregator_f == cluster.scheme.c_max
    out = cluster.step(0)
    assert out.info.distorted_files == cluster.scheme.c_max


def test_first_k_drops_the_slow_workers(logistic_data, make_cfg) -> None:
    cfg = make_cfg(scheme={"name": "robust", "aggregator": "median"},
                   stragglers={"model": "slow_set", "params": {"workers": [2, 5], "factor": 10},
                               "policy": "first_k", "k": 7})
    cluster = SimulatedCluster(build_job(cfg, dataset=logistic_data))
    out = cluster.step(0)
    assert out.info.received == 7 and out.info.dropped_files == 2
    assert out.sim_time == pytest.approx(1.0)  # the 7th arrival is an unslowed worker


def test_dstar_rejects_gross_outliers(logistic_data, make_cfg) -> None:
    cfg = make_cfg(scheme={"name": "dstar", "k": 7, "lam": 3.0},
                   attack={"name": "constant", "q": 2, "params": {"c": 1e3}})
    cluster = SimulatedCluster(build_job(cfg, dataset=logistic_data))
    out = cluster.step(0)
    assert out.info.byzantine_accepted == 0 and out.info.received == 7


@pytest.mark.parametrize("workers, scheme, fragment", [
    (15, {"name": "detox", "r": 4}, "divide"),
    (18, {"name": "byzshield", "r": 3}, "prime power"),
    (15, {"name": "draco_repetition", "s": 2, "r": 3}, "2s+1"),
    (15, {"name": "draco_repetition", "s": 3}, "divide"),
    (9, {"name": "dstar", "k": 4}, "k >= 2f + 1"),
    (9, {"name": "vanilla", "aggregator": "median"}, "robust"),
    (9, {"name": "robust", "aggregator": "bulyan"}, "bulyan"),
])
def test_scheme_parameter_errors(workers, scheme, fragment, logistic_data, make_cfg) -> None:
    # found when the config is parsed (field checks) or when the scheme is built (checks that
    # need the number of workers), both before any training
    with pytest.raises(ValueError, match=re.escape(fragment)):
        cfg = make_cfg(workers=workers, scheme=scheme, attack={"name": "alie", "q": 2})
        SimulatedCluster(build_job(cfg, dataset=logistic_data))
