"""Per-file gradients: fused == vmap == loop == manual autograd, on every model and edge case."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import byzantium.training.pergrad as pergrad
from byzantium.training import (
    Dataset,
    build_model,
    choose_method,
    flat_grad,
    flat_params,
    loss_fn,
    per_file_gradients,
    set_flat_params,
)

F_, M_ = 5, 4  # files, samples per file


def fake(shape, classes=10, seed=0, regression=False) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(F_ * M_, *shape, generator=g)
    if regression:
        y = torch.randn(F_ * M_, generator=g)
        return Dataset("fake", x, y, x, y, 0, tuple(shape), task="regression")
    y = torch.randint(0, classes, (F_ * M_,), generator=g)
    return Dataset("fake", x, y, x, y, classes, tuple(shape))


def files(ds: Dataset):
    idx = torch.arange(F_ * M_).view(F_, M_)
    return ds.x_train[idx], ds.y_train[idx]


def manual(model: nn.Module, lf, xf, yf) -> torch.Tensor:
    """Reference: backward() per file, read the .grad fields."""
    rows = []
    for i in range(xf.shape[0]):
        model.zero_grad(set_to_none=False)
        lf(model(xf[i]), yf[i]).backward()
        rows.append(torch.cat([torch.zeros(p.numel()) if p.grad is None else p.grad.reshape(-1) for p in model.parameters()]))
    model.zero_grad(set_to_none=True)
    return torch.stack(rows)


def close(a, b, rtol=1e-4):
    return (a - b).abs().max() <= rtol * b.abs().max() + 1e-7


MODELS = [
    ("logreg", dict(shape=(40,)), {}, "fused"),
    ("logreg", dict(shape=(7,), regression=True), {}, "fused"),
    ("mlp", dict(shape=(40,)), {"hidden": (16, 8)}, "fused"),
    ("mlp", dict(shape=(6,), regression=True), {"hidden": (5,)}, "fused"),
    ("cnn1d", dict(shape=(40,)), {"channels": 6}, "fused"),
    ("lenet", dict(shape=(1, 8, 8)), {"channels": (3, 4), "hidden": (12,)}, "fused"),
    ("lenet", dict(shape=(3, 32, 32)), {"channels": (3, 4), "hidden": (12,)}, "fused"),
    ("resnet18", dict(shape=(3, 16, 16)), {"width": 4}, "fused"),
    ("resnet18", dict(shape=(3, 8, 8)), {"width": 2, "norm": "none"}, "fused"),
    ("resnet18", dict(shape=(3, 8, 8)), {"width": 2, "norm": "batch"}, "vmap"),
]


@pytest.mark.parametrize("name,data,kw,auto", MODELS)
def test_methods_agree_with_manual_autograd(name, data, kw, auto):
    ds = fake(**data)
    model = build_model(name, ds, seed=1, **kw)
    lf = loss_fn(ds)
    xf, yf = files(ds)
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    ref = manual(model, lf, xf, yf)
    for k, v in buffers.items():  # manual() ran BatchNorm in training mode: restore statistics
        model.get_buffer(k).copy_(v)
    d = sum(p.numel() for p in model.parameters())
    results = {}
    for method in ("fused", "vmap", "loop", "auto"):
        if method == "fused" and auto != "fused":
            with pytest.raises(ValueError, match="BatchNorm"):
                per_file_gradients(model, lf, xf, yf, method="fused")
            continue
        results[method] = per_file_gradients(model, lf, xf, yf, method=method)
        assert results[method].shape == (F_, d) and results[method].dtype == torch.float32
        assert close(results[method], ref), (method, (results[method] - ref).abs().max())
    assert choose_method(model) == auto
    # per-file gradients leave .grad and the BatchNorm running statistics alone
    assert all(p.grad is None for p in model.parameters())
    for k, v in buffers.items():
        assert torch.equal(model.get_buffer(k), v), k
    # the rows average to the gradient of the whole batch (equal file sizes)
    full = flat_grad(model, lf, xf.reshape(F_ * M_, *xf.shape[2:]), yf.reshape(-1))
    if auto == "fused":
        assert close(results["auto"].mean(0), full)


class Mixer(nn.Module):
    """Forward that couples the samples of a batch: the fused path must not be used."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 3)

    def forward(self, x):
        return self.lin(x - x.mean(dim=0, keepdim=True))


def test_auto_detects_a_forward_that_mixes_samples():
    torch.manual_seed(0)
    model, lf = Mixer(), nn.functional.cross_entropy
    xf, yf = torch.randn(4, 5, 6), torch.randint(0, 3, (4, 5))
    ref = manual(model, lf, xf, yf)
    assert not close(per_file_gradients(model, lf, xf, yf, method="fused"), ref)  # silently wrong
    with pytest.warns(RuntimeWarning, match="disagree with the loop"):
        got = per_file_gradients(model, lf, xf, yf)
    assert close(got, ref) and choose_method(model) == "vmap"
    assert close(per_file_gradients(model, lf, xf, yf), ref)  # cached choice


class Odd(nn.Module):
    """Dilated/strided/grouped convolutions, LayerNorm, a frozen layer and a shared layer."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(2, 4, 3, stride=2, padding=2, dilation=2)
        self.c2 = nn.Conv1d(4, 6, 3, padding=1, groups=2, bias=False)
        self.c3 = nn.Conv2d(1, 3, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2))
        self.ln = nn.LayerNorm(6)
        self.shared = nn.Linear(6, 6)
        self.frozen = nn.Linear(6, 6)
        self.frozen.requires_grad_(False)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        a = torch.relu(self.c1(x))
        a = self.c2(a).mean(dim=2)
        b = self.c3(x.unsqueeze(1)).mean(dim=(1, 2))[:, :6]
        h = self.ln(a + b)
        h = torch.tanh(self.shared(torch.tanh(self.shared(h))))
        return self.head(self.frozen(h))


def test_fused_rules_on_unusual_layers(monkeypatch):
    torch.manual_seed(0)
    model = Odd()
    xf, yf = torch.randn(3, 4, 2, 12), torch.randint(0, 3, (3, 4))
    lf = nn.functional.cross_entropy  # no `sample_mean` flag: the generic per-file loss sum
    ref = manual(model, lf, xf, yf)
    fused = per_file_gradients(model, lf, xf, yf, method="fused")
    assert close(fused, ref)
    names = [n for n, _ in model.named_parameters()]
    sizes = [p.numel() for p in model.parameters()]
    lo = sum(sizes[: names.index("frozen.weight")])
    frozen_cols = slice(lo, lo + 6 * 6 + 6)
    assert torch.count_nonzero(fused[:, frozen_cols]) == 0
    for method in ("vmap", "loop"):
        out = per_file_gradients(model, lf, xf, yf, method=method)
        assert close(out, ref)
        assert torch.count_nonzero(out[:, frozen_cols]) == 0
    for strategy in ("unfold", "grouped", "loop"):  # the three convolution weight-gradient kernels
        monkeypatch.setattr(pergrad, "CONV_STRATEGY", strategy)
        assert close(per_file_gradients(model, lf, xf, yf, method="fused"), ref), strategy


def test_fused_on_regression_with_generic_loss():
    ds = fake((5,), regression=True)
    model = build_model("mlp", ds, hidden=(4,))
    xf, yf = files(ds)

    def half_mse(out, y):
        return 0.5 * ((out.squeeze(-1) - y) ** 2).mean()

    assert close(per_file_gradients(model, half_mse, xf, yf, method="fused"), manual(model, half_mse, xf, yf))


def test_flat_helpers():
    ds = fake((6,))
    model = build_model("mlp", ds, hidden=(3,))
    v = torch.arange(float(6 * 3 + 3 + 3 * 10 + 10))
    set_flat_params(model, v)
    assert torch.equal(flat_params(model), v)
    v += 1  # no aliasing
    assert flat_params(model)[0].item() == 0.0
    assert torch.equal(model.net[0].weight.detach().reshape(-1), torch.arange(18.0))
    with pytest.raises(ValueError, match="61 entries"):
        set_flat_params(model, torch.zeros(60))
    lf = loss_fn(ds)
    g = flat_grad(model, lf, ds.x_train, ds.y_train)
    lf(model(ds.x_train), ds.y_train).backward()
    assert torch.equal(g, nn.utils.parameters_to_vector(p.grad for p in model.parameters()))


def test_input_validation():
    ds = fake((6,))
    model = build_model("logreg", ds)
    xf, yf = files(ds)
    with pytest.raises(ValueError, match="method must be one of"):
        per_file_gradients(model, loss_fn(ds), xf, yf, method="fast")
    with pytest.raises(ValueError, match=r"x_files must be \(f, m"):
        per_file_gradients(model, loss_fn(ds), xf, yf[:, :2])


@pytest.mark.parametrize("method", ["fused", "vmap", "loop"])
def test_return_loss_is_the_mean_of_per_file_losses(method):
    ds = fake((40,))
    model = build_model("mlp", ds, seed=0, hidden=(8,))
    lf = loss_fn(ds)
    xf, yf = files(ds)
    G, loss = per_file_gradients(model, lf, xf, yf, method=method, return_loss=True)
    with torch.no_grad():
        expected = torch.stack([lf(model(xf[i]), yf[i]) for i in range(xf.shape[0])]).mean()
    assert isinstance(loss, float)
    assert loss == pytest.approx(float(expected), rel=1e-5)
    assert torch.equal(G, per_file_gradients(model, lf, xf, yf, method=method))
