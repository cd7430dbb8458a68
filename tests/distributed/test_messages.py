"""The schemes' message API (worker_message, byzantine_messages, server_aggregate, check_live),
in one process: fed what the simulator computes, the server's side gives the simulator's step."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from byzantium.runtime.distributed.star.geometry import geometry
from byzantium.runtime.job import build_job
from byzantium.runtime.simulator import omniscient_view
from byzantium.seeding import generator
from byzantium.training.datasets import load_dataset

from .conftest import tiny_cfg

SCHEMES = [
    ({"name": "vanilla"}, 6),
    ({"name": "robust", "aggregator": "median"}, 6),
    ({"name": "draco_repetition", "s": 1}, 6),
    ({"name": "draco_cyclic", "s": 1}, 6),
    ({"name": "detox", "r": 3, "aggregator": "median"}, 6),
    ({"name": "byzshield", "assignment": "ramanujan", "m": 3, "s": 3, "aggregator": "median"}, 9),
    ({"name": "dstar", "k": 6, "lam": 3.0}, 6),
]
IDS = [s["name"] for s, _ in SCHEMES]


@pytest.fixture(scope="module")
def data():
    return load_dataset("logistic", train_size=600, seed=0, dim=10, num_classes=3)


def _messages(job, view):
    """Every worker's message as the distributed runtime builds it, from the view's gradients."""
    scheme = job.scheme
    byz = scheme.byzantine_messages(dataclasses.replace(
        view, generator=generator(job.cfg.seed, "attack", view.step)))
    rows = []
    for w in range(job.cfg.workers):
        if w in byz:
            rows.append(byz[w])
        else:
            files = list(scheme.assignment.files_of[w])
            rows.append(scheme.worker_message(w, view.honest[files]))
    return torch.stack(rows)


def _server(job, view, messages, received=None):
    return job.scheme.server_aggregate(
        messages, view.received if received is None else received, step=view.step,
        generator=generator(job.cfg.seed, "attack", view.step),
        validation=view.validation,
        order=torch.sort(view.arrival_order).values,
        byzantine=view.byzantine,
    )


@pytest.mark.parametrize("attack", [None, {"name": "alie", "q": 1, "params": {"z": 2.0}},
                                    {"name": "label_flip", "q": 1}], ids=["clean", "alie", "label_flip"])
@pytest.mark.parametrize("scheme, K", SCHEMES, ids=IDS)
def test_server_side_equals_simulate(scheme, K, attack, data) -> None:
    over = {"scheme": scheme}
    if attack:
        over["attack"] = attack
    cfg = tiny_cfg(workers=K, **over)
    job = build_job(cfg, dataset=data)
    model = job.model
    geo = geometry(job)
    for step in (0, 1):
        view = omniscient_view(job, job.model, step)[0]
        want, info_sim = job.scheme.simulate(view)
        messages = _messages(job, omniscient_view(job, job.model, step)[0])
        assert messages.shape == (K, *geo.message_shape) and messages.dtype == geo.message_dtype
        got, info = _server(job, view, messages)
        if scheme["name"] == "draco_cyclic":  # worker-by-worker encoding vs the stacked one
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
        else:
            assert torch.equal(got, want), (got - want).abs().max()
        assert info.received == info_sim.received == K
        assert info.dropped_files == info_sim.dropped_files
        if attack is None:
            assert info.distorted_files == 0
        with torch.no_grad():  # move on, so that step 1 runs on other parameters
            torch.nn.utils.vector_to_parameters(
                torch.nn.utils.parameters_to_vector(model.parameters()) - 0.5 * want,
                model.parameters())


@pytest.mark.parametrize("scheme", [{"name": "draco_repetition", "s": 1}, {"name": "draco_cyclic", "s": 1},
                                    {"name": "robust", "aggregator": "median"}], ids=lambda s: s["name"])
def test_a_missing_message_is_a_straggler_to_the_scheme(scheme, data) -> None:
    cfg = tiny_cfg(workers=6, scheme=scheme)
    job = build_job(cfg, dataset=data)
    view = omniscient_view(job, job.model, 0)[0]
    received = torch.ones(6, dtype=torch.bool)
    received[2] = False
    view = dataclasses.replace(view, received=received,
                               arrival_order=torch.tensor([0, 1, 3, 4, 5]))
    want, _ = job.scheme.simulate(view)
    messages = _messages(job, view)
    messages[2] = float("nan")  # whatever sits in a missing row must not matter
    got, info = _server(job, view, messages, received)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    assert info.received == 5


def test_colluding_byzantine_copies_agree_and_win(data) -> None:
    """DRACO repetition r=3 (groups {0,1,2}, {3,4,5}), q=2 worst case: both Byzantine workers
    hold group 0's file and send the same attack row, which wins the vote."""
    cfg = tiny_cfg(workers=6, scheme={"name": "draco_repetition", "s": 1},
                   attack={"name": "constant", "q": 2, "params": {"c": -3.0}})
    job = build_job(cfg, dataset=data)
    view = omniscient_view(job, job.model, 0)[0]
    byz = job.scheme.byzantine_messages(view)
    (a, b) = sorted(byz)
    assert {a, b} <= {0, 1, 2} and torch.equal(byz[a], byz[b])
    assert torch.equal(byz[a], torch.full_like(byz[a], -3.0))
    _, info = _server(job, view, _messages(job, view))
    assert info.distorted_files == 1


def test_check_live(data) -> None:
    def alive(*dead, K=6):
        m = torch.ones(K, dtype=torch.bool)
        m[list(dead)] = False
        return m

    rep = build_job(tiny_cfg(scheme={"name": "draco_repetition", "s": 1}), dataset=data).scheme
    assert rep.check_live(alive()) is None and rep.check_live(alive(0)) is None
    assert rep.check_live(alive(0, 3)) is None
    assert "files [0]" in rep.check_live(alive(0, 1))
    van = build_job(tiny_cfg(), dataset=data).scheme
    assert van.check_live(alive(0, 1, 2, 3, 4)) is None
    assert "no live worker" in van.check_live(alive(0, 1, 2, 3, 4, 5))
    krum = build_job(tiny_cfg(scheme={"name": "robust", "aggregator": "krum", "f": 1}), dataset=data).scheme
    assert krum.check_live(alive()) is None and "krum" in krum.check_live(alive(0, 1, 2)).lower()
    cyc = build_job(tiny_cfg(scheme={"name": "draco_cyclic", "s": 1}), dataset=data).scheme
    assert cyc.check_live(alive(4)) is None and "s=1" in cyc.check_live(alive(4, 5))
    cyc_q = build_job(tiny_cfg(scheme={"name": "draco_cyclic", "s": 1},
                               attack={"name": "alie", "q": 1}), dataset=data).scheme
    assert "q=1" in cyc_q.check_live(alive(4))
    ds = build_job(tiny_cfg(scheme={"name": "dstar", "k": 5}), dataset=data).scheme
    assert ds.check_live(alive(0)) is None and "k=5" in ds.check_live(alive(0, 1))


def test_the_server_vote_buffer_never_leaks_into_a_returned_gradient(data) -> None:
    """The vote's output buffer is reused across steps; a rule that returns a view of one of its
    input rows (a user's rule, or Krum written with basic indexing) must still get a gradient
    that later steps do not overwrite."""
    cfg = tiny_cfg(workers=9, scheme={"name": "byzshield", "assignment": "ramanujan", "m": 3, "s": 3,
                                      "aggregator": "krum"})
    job = build_job(cfg, dataset=data)
    job.scheme.aggregator = lambda X: X[0]  # a view into the buffer
    view = omniscient_view(job, job.model, 0)[0]
    messages = _messages(job, view)
    g0, _ = _server(job, view, messages)
    kept = g0.clone()
    g1, _ = _server(job, view, messages * 3.0)
    assert torch.equal(g0, kept) and torch.equal(g1, 3.0 * kept)
