"""Models, losses and evaluation.

Models (:func:`build_model`): ``"logreg"`` (one linear layer; a linear regressor on regression
data), ``"mlp"``, ``"cnn1d"`` (the MNIST-1D convnet of Greydanus 2020), ``"lenet"`` (LeNet-5
style, any image size through adaptive pooling) and ``"resnet18"`` (the CIFAR ResNet-18 of
He et al. 2016 with a ``width`` knob: 64 is the usual network, 4 runs in CPU tests).

Normalisation policy. Per-file gradients (:mod:`byzantium.training.pergrad`) treat each file as
its own mini-batch, as a worker would. Models therefore use GroupNorm (per-sample statistics) or
no normalisation by default, so a file's gradient does not depend on the other files and the
fused one-pass gradient applies. ``resnet18(norm="batch")`` is supported: in training mode each
file is normalised with its own batch statistics (as in ByzShield/DETOX, where each worker
forwards its files separately), and per-file gradients never update the running statistics; call
:func:`update_batchnorm_stats` to refresh them before evaluation.

Initialisation is deterministic: modules are built on the ``meta`` device and their parameters
drawn from a private ``torch.Generator`` seeded with ``seed`` (PyTorch's default schemes), so
building a model neither reads nor advances the global RNG.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Sequence, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import Registry
from .datasets import Dataset

__all__ = [
    "MODELS",
    "model",
    "build_model",
    "loss_fn",
    "evaluate",
    "update_batchnorm_stats",
    "LogReg",
    "MLP",
    "CNN1D",
    "LeNet",
    "ResNet18",
]


MODELS: Registry[type[nn.Module]] = Registry("model", error=ValueError)
"""Model classes by name; a class is built as ``cls(input_shape, num_outputs, **keywords)``."""

M = TypeVar("M", bound=type)


def model(name: str) -> Callable[[M], M]:
    """Register an ``nn.Module`` class as model ``name``; its keyword arguments after
    ``(input_shape, num_outputs)`` are the keywords :func:`build_model` accepts."""
    return MODELS.register(name)


def _keywords(cls: type) -> list[str]:
    """The keywords of ``cls(input_shape, num_outputs, **keywords)``."""
    return sorted(list(inspect.signature(cls).parameters)[2:])


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def _in_features(shape: Sequence[int]) -> int:
    return int(math.prod(shape))


@model("logreg")
class LogReg(nn.Module):
    """``Linear(prod(input_shape), out)`` on flattened inputs: logistic / linear regression."""

    def __init__(self, input_shape: Sequence[int], num_outputs: int) -> None:
        super().__init__()
        self.linear = nn.Linear(_in_features(input_shape), num_outputs)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x.flatten(1))


@model("mlp")
class MLP(nn.Module):
    """Fully connected ReLU network on flattened inputs (hidden sizes ``hidden``)."""

    def __init__(self, input_shape: Sequence[int], num_outputs: int, hidden: Sequence[int] = (100, 100)) -> None:
        super().__init__()
        sizes = [_in_features(input_shape), *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], num_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1))


@model("cnn1d")
class CNN1D(nn.Module):
    """The MNIST-1D convnet (Greydanus 2020, "Scaling down deep learning"): three ReLU conv
    layers (kernel 5/3/3, stride 2, padding 1, ``channels`` wide) and a linear read-out; about
    5k parameters for length-40 signals. Inputs ``(N, L)`` or ``(N, C, L)``."""

    def __init__(self, input_shape: Sequence[int], num_outputs: int, channels: int = 25) -> None:
        super().__init__()
        _check(len(input_shape) in (1, 2), f"cnn1d: input_shape must be (L,) or (C, L), got {tuple(input_shape)}")
        c_in = 1 if len(input_shape) == 1 else int(input_shape[0])
        length = int(input_shape[-1])
        self.conv1 = nn.Conv1d(c_in, channels, 5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        for k in (5, 3, 3):
            length = (length + 2 - k) // 2 + 1
        _check(length >= 1, f"cnn1d: input length {input_shape[-1]} is too short (needs >= 3)")
        self.linear = nn.Linear(channels * length, num_outputs)
        self._unsqueeze = len(input_shape) == 1

    def forward(self, x: Tensor) -> Tensor:
        if self._unsqueeze:
            x = x.unsqueeze(1)
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        return self.linear(x.flatten(1))


@model("lenet")
class LeNet(nn.Module):
    """LeNet-5 style CNN (LeCun et al. 1998) for ``(C, H, W)`` images of any size.

    conv5x5(pad 2) -> ReLU -> maxpool 2 -> conv5x5(pad 2) -> ReLU -> adaptive avg-pool to 4x4 ->
    FC 120 -> FC 84 -> FC out. On 32x32 inputs the pooling averages 4x4 blocks; on 8x8 digits it
    is the identity.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        channels: Sequence[int] = (6, 16),
        hidden: Sequence[int] = (120, 84),
    ) -> None:
        super().__init__()
        _check(len(input_shape) == 3, f"lenet: input_shape must be (C, H, W), got {tuple(input_shape)}")
        _check(len(channels) == 2, f"lenet: channels must have 2 entries, got {tuple(channels)}")
        c1, c2 = channels
        self.conv1 = nn.Conv2d(int(input_shape[0]), c1, 5, padding=2)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2)
        self.pool = nn.AdaptiveAvgPool2d(4)
        sizes = [c2 * 16, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], num_outputs))
        self.head = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = self.pool(F.relu(self.conv2(x)))
        return self.head(x.flatten(1))


def _norm(kind: str, channels: int, groups: int) -> nn.Module:
    if kind == "group":  # at most `groups` groups of >= 2 channels (1-channel groups on a 1x1 map are constant)
        return nn.GroupNorm(math.gcd(groups, max(channels // 2, 1)), channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, norm: str, groups: int) -> None:
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias)
        self.norm1 = _norm(norm, c_out, groups)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=bias)
        self.norm2 = _norm(norm, c_out, groups)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=bias), _norm(norm, c_out, groups)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))  # no in-place ops: the fused per-file path hooks outputs


@model("resnet18")
class ResNet18(nn.Module):
    """CIFAR ResNet-18 (He et al. 2016; the 3x3-stem variant without max-pool used for 32x32).

    Stages of 2 basic blocks with ``width * (1, 2, 4, 8)`` channels, strides 1, 2, 2, 2, global
    average pool, linear head. ``width=64`` is the standard 11M-parameter network (for GPUs);
    ``width=4`` is a 45k-parameter version for CPU tests. ``norm``: ``"group"`` (default;
    ``gcd(groups, channels // 2)`` groups: 32 at width 64 as in Wu & He 2018, and never groups of
    one channel, which a 1x1 feature map would turn into constants), ``"batch"`` or ``"none"``.
    """

    def __init__(
        self, input_shape: Sequence[int], num_outputs: int, width: int = 64, norm: str = "group", groups: int = 32
    ) -> None:
        super().__init__()
        _check(len(input_shape) == 3, f"resnet18: input_shape must be (C, H, W), got {tuple(input_shape)}")
        _check(isinstance(width, int) and width >= 1, f"resnet18: width must be a positive int, got width={width!r}")
        _check(norm in ("group", "batch", "none"), f"resnet18: norm must be 'group', 'batch' or 'none', got norm={norm!r}")
        _check(isinstance(groups, int) and groups >= 1, f"resnet18: groups must be a positive int, got groups={groups!r}")
        self.stem = nn.Conv2d(int(input_shape[0]), width, 3, padding=1, bias=norm == "none")
        self.stem_norm = _norm(norm, width, groups)
        blocks: list[nn.Module] = []
        c_in = width
        for i, stride in enumerate((1, 2, 2, 2)):
            c_out = width * 2**i
            blocks += [_BasicBlock(c_in, c_out, stride, norm, groups), _BasicBlock(c_out, c_out, 1, norm, groups)]
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c_in, num_outputs)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem_norm(self.stem(x)))
        x = self.blocks(x)
        return self.head(x.mean(dim=(2, 3)))


def build_model(
    name: str, dataset: Dataset, *, seed: int = 0, device: str | torch.device = "cpu", **kw: Any
) -> nn.Module:
    """Build model ``name`` for ``dataset`` (input shape, output width), parameters drawn from a
    private generator seeded with ``seed`` (same seed, same parameters, bit for bit).

    Keywords: ``mlp``: ``hidden`` (100, 100); ``cnn1d``: ``channels`` (25); ``lenet``:
    ``channels`` (6, 16), ``hidden`` (120, 84); ``resnet18``: ``width`` (64), ``norm``
    ("group"), ``groups`` (32).
    """
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"build_model: name must be one of {tuple(MODELS.names())}, got name={name!r}")
    cls = MODELS[name]
    allowed = _keywords(cls)
    extra = sorted(set(kw) - set(allowed))
    if extra:
        raise ValueError(f"build_model({name!r}): unknown keyword(s) {extra}; allowed: {allowed}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"build_model: seed must be a non-negative int, got seed={seed!r}")
    with torch.device("meta"):
        net = cls(dataset.input_shape, dataset.num_outputs, **kw)
    net = net.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(seed)
    for mod in net.modules():
        _init_module(mod, gen)
    return net.to(device)


@torch.no_grad()
def _init_module(mod: nn.Module, gen: torch.Generator) -> None:
    """PyTorch's default initialisation, drawn from ``gen``."""
    if isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d)):
        nn.init.kaiming_uniform_(mod.weight, a=math.sqrt(5), generator=gen)  # U(+-1/sqrt(fan_in))
        if mod.bias is not None:
            bound = 1.0 / math.sqrt(mod.weight[0].numel())
            nn.init.uniform_(mod.bias, -bound, bound, generator=gen)
    elif isinstance(mod, (nn.GroupNorm, nn.LayerNorm, nn.modules.batchnorm._BatchNorm)):
        if mod.weight is not None:
            nn.init.ones_(mod.weight)
        if getattr(mod, "bias", None) is not None:
            nn.init.zeros_(mod.bias)
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.reset_running_stats()
    elif any(True for _ in mod.parameters(recurse=False)) or any(True for _ in mod.buffers(recurse=False)):
        raise TypeError(f"build_model: no initialiser for {type(mod).__name__}")


def _cross_entropy(out: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy over the samples."""
    return F.cross_entropy(out, y)


def _mse(out: Tensor, y: Tensor) -> Tensor:
    """Mean squared error ``mean((f(x) - y)^2)`` over the samples (no 1/2 factor)."""
    return F.mse_loss(out.reshape(y.shape), y)


# Both are means over samples of a per-sample loss; pergrad uses this to form the sum of per-file
# means from one loss over the whole batch (``F * loss(batch)``).
_cross_entropy.sample_mean = True  # type: ignore[attr-defined]
_mse.sample_mean = True  # type: ignore[attr-defined]


def loss_fn(dataset: Dataset) -> Callable[[Tensor, Tensor], Tensor]:
    """The training loss of ``dataset``: mean cross-entropy, or mean squared error (regression)."""
    return _cross_entropy if dataset.task == "classification" else _mse


@torch.no_grad()
def evaluate(
    model: nn.Module, dataset: Dataset, batch_size: int = 1000, *, split: str = "test"
) -> dict[str, float]:
    """Loss and quality of ``model`` on ``dataset``'s ``split`` ("test" or "train").

    Classification: ``{"loss", "accuracy"}`` (accuracy in [0, 1], never NaN: diverged outputs
    count as whatever ``argmax`` picks). Regression: ``{"loss", "mse"}``. When the data set has a
    known ``optimum`` of matching size, also ``"distance_to_optimum"`` = ``||theta - theta*||_2``.
    The model is put in eval mode for the pass and restored afterwards.
    """
    if split not in ("test", "train"):
        raise ValueError(f"evaluate: split must be 'test' or 'train', got split={split!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"evaluate: batch_size must be a positive int, got batch_size={batch_size!r}")
    x, y = (dataset.x_test, dataset.y_test) if split == "test" else (dataset.x_train, dataset.y_train)
    if x.shape[0] == 0:
        raise ValueError(f"evaluate: the {split} split of {dataset.name!r} is empty")
    lf = loss_fn(dataset)
    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    try:
        for i in range(0, x.shape[0], batch_size):
            xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
            out = model(xb)
            total_loss += float(lf(out, yb)) * xb.shape[0]
            if dataset.task == "classification":
                correct += int((out.argmax(dim=1) == yb).sum())
    finally:
        model.train(was_training)
    n = x.shape[0]
    res = {"loss": total_loss / n}
    if dataset.task == "classification":
        res["accuracy"] = correct / n
    else:
        res["mse"] = res["loss"]
    if dataset.optimum is not None:
        theta = nn.utils.parameters_to_vector(params).detach().cpu().to(torch.float64)
        if theta.numel() == dataset.optimum.numel():
            res["distance_to_optimum"] = float((theta - dataset.optimum.to(torch.float64)).norm())
    return res


@torch.no_grad()
def update_batchnorm_stats(model: nn.Module, x: Tensor, batch_size: int = 250) -> None:
    """Recompute BatchNorm running statistics from ``x`` (cumulative average over the batches).

    Per-file gradients never touch running statistics (see the module docstring); call this on a
    sample of training inputs before evaluating a ``norm="batch"`` model. No-op without BatchNorm.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [(m.momentum, m.training) for m in bns]
    was_training = model.training
    device = next(model.parameters()).device
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average
        model.train()
        for i in range(0, x.shape[0], batch_size):
            model(x[i : i + batch_size].to(device))
    finally:
        for m, (mom, _) in zip(bns, saved):
            m.momentum = mom
        model.train(was_training)
