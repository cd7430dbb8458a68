"""Models: shapes, deterministic init, losses, evaluation, known optima, BatchNorm statistics."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from byzantium.training import (
    Dataset,
    build_model,
    evaluate,
    flat_grad,
    flat_params,
    load_dataset,
    loss_fn,
    set_flat_params,
    update_batchnorm_stats,
)
from byzantium.training.models import ResNet18


def fake(shape, n=40, classes=10, seed=0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return Dataset("fake", x, y, x[: n // 2], y[: n // 2], classes, tuple(shape))


CASES = [
    ("logreg", (40,), {}),
    ("mlp", (40,), {"hidden": (16, 8)}),
    ("cnn1d", (40,), {}),
    ("cnn1d", (2, 30), {"channels": 4}),
    ("lenet", (1, 8, 8), {}),
    ("lenet", (3, 32, 32), {"channels": (3, 4), "hidden": (10,)}),
    ("resnet18", (3, 16, 16), {"width": 4}),
    ("resnet18", (1, 8, 8), {"width": 2, "norm": "batch"}),
    ("resnet18", (3, 8, 8), {"width": 2, "norm": "none"}),
]


@pytest.mark.parametrize("name,shape,kw", CASES)
def test_output_shape_and_deterministic_init(name, shape, kw):
    ds = fake(shape)
    rng_before = torch.random.get_rng_state()
    a = build_model(name, ds, seed=5, **kw)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # global RNG untouched
    b = build_model(name, ds, seed=5, **kw)
    c = build_model(name, ds, seed=6, **kw)
    assert torch.equal(flat_params(a), flat_params(b))
    assert not torch.equal(flat_params(a), flat_params(c))
    assert all(torch.isfinite(p).all() for p in a.parameters())
    assert a(ds.x_train[:3]).shape == (3, 10)


def test_parameter_counts_match_the_papers():
    mnist_like = fake((40,))
    # Greydanus' MNIST-1D CNN: 1*25*5+25 + 2*(25*25*3+25) + 125*10+10
    assert sum(p.numel() for p in build_model("cnn1d", mnist_like).parameters()) == 5210
    with torch.device("meta"):
        resnet = ResNet18((3, 32, 32), 10, width=64)
    assert sum(p.numel() for p in resnet.parameters()) == 11_173_962  # CIFAR ResNet-18
    gn = [m for m in resnet.modules() if isinstance(m, nn.GroupNorm)]
    assert {m.num_groups for m in gn} == {32}


def test_default_init_bounds():
    m = build_model("logreg", fake((40,)), seed=0)
    bound = 1 / math.sqrt(40)  # PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    w = m.linear.weight.detach().abs().max().item()
    assert 0.9 * bound < w <= bound


def test_build_model_errors():
    ds = fake((40,))
    with pytest.raises(ValueError, match="name must be one of"):
        build_model("vgg", ds)
    with pytest.raises(ValueError, match=r"unknown keyword\(s\) \['width'\]"):
        build_model("mlp", ds, width=3)
    with pytest.raises(ValueError, match=r"lenet: input_shape must be \(C, H, W\)"):
        build_model("lenet", ds)
    with pytest.raises(ValueError, match="norm must be"):
        build_model("resnet18", fake((3, 8, 8)), width=2, norm="layer")


def test_a_registered_model_is_built_by_name_with_its_keywords(monkeypatch):
    from byzantium.training.models import MODELS, model

    monkeypatch.setattr(MODELS, "_entries", dict(MODELS._entries))
    monkeypatch.setattr(MODELS, "_params", dict(MODELS._params))

    @model("tiny_for_test")
    class Tiny(nn.Module):
        def __init__(self, input_shape, num_outputs, width=3):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width),
                                     nn.Linear(width, num_outputs))

        def forward(self, x):
            return self.net(x)

    ds = fake((4,))
    m = build_model("tiny_for_test", ds, seed=1, width=2)
    assert isinstance(m, Tiny) and m(ds.x_train[:5]).shape == (5, 10)
    assert torch.equal(flat_params(m), flat_params(build_model("tiny_for_test", ds, seed=1, width=2)))
    with pytest.raises(ValueError, match=r"unknown keyword\(s\) \['depth'\]; allowed: \['width'\]"):
        build_model("tiny_for_test", ds, depth=2)


def test_linear_optimum_has_zero_full_batch_gradient():
    for l2 in (0.0, 0.3):
        ds = load_dataset("linear", train_size=400, test_size=50, dim=8, noise=0.5, l2=l2, seed=0)
        model = build_model("logreg", ds)
        lf = loss_fn(ds)
        g0 = flat_grad(model, lf, ds.x_train, ds.y_train)
        set_flat_params(model, ds.optimum)
        theta = flat_params(model)
        g = flat_grad(model, lf, ds.x_train, ds.y_train) + l2 * theta
        assert float(g.norm()) < 1e-4 * float(g0.norm())
        res = evaluate(model, ds, split="train")
        assert res["distance_to_optimum"] == 0.0
        mse = float(((ds.x_train @ theta[:-1] + theta[-1] - ds.y_train) ** 2).mean())
        assert res["mse"] == pytest.approx(mse, rel=1e-5) and res["loss"] == res["mse"]


def test_logistic_optimum_has_zero_regularised_gradient():
    ds = load_dataset("logistic", train_size=300, test_size=50, dim=6, num_classes=3, l2=0.05, seed=1)
    model = build_model("logreg", ds)
    set_flat_params(model, ds.optimum)
    g = flat_grad(model, loss_fn(ds), ds.x_train, ds.y_train) + ds.l2 * flat_params(model)
    assert float(g.norm()) < 1e-5
    res = evaluate(model, ds)
    assert 0.5 < res["accuracy"] <= 1.0 and res["distance_to_optimum"] == 0.0


def test_evaluate_closed_form():
    ds = fake((5,), n=30, classes=4, seed=2)
    model = build_model("logreg", ds)
    set_flat_params(model, torch.zeros(5 * 4 + 4))  # equal logits: argmax is class 0
    res = evaluate(model, ds, batch_size=7)
    assert res["loss"] == pytest.approx(math.log(4), rel=1e-6)
    assert res["accuracy"] == pytest.approx(float((ds.y_test == 0).float().mean()))
    assert "distance_to_optimum" not in res
    model.train()
    evaluate(model, ds)
    assert model.training  # mode restored
    with pytest.raises(ValueError, match="split must be"):
        evaluate(model, ds, split="val")


def test_update_batchnorm_stats_is_the_batch_average():
    ds = fake((1, 8, 8))
    model = build_model("resnet18", ds, width=2, norm="batch")
    x = ds.x_train[:20]
    update_batchnorm_stats(model, x, batch_size=20)
    with torch.no_grad():
        z = model.stem(x)
    bn = model.stem_norm
    assert torch.allclose(bn.running_mean, z.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(bn.running_var, z.var(dim=(0, 2, 3), unbiased=True), atol=1e-4)
    assert bn.momentum == 0.1
