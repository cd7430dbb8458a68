r"""Per-file gradients: the simulator's hot path.

Given files ``x_files`` ``(f, m, *input_shape)`` and ``y_files`` ``(f, m)``, row ``i`` of
:func:`per_file_gradients` is the flat gradient (``parameters_to_vector`` order) of the mean loss
over file ``i``:

.. math:: G_i = \nabla_\theta \tfrac1m \textstyle\sum_{j=1}^m \ell(h_\theta(x_{ij}), y_{ij}).

Three interchangeable methods (they agree to float tolerance; tests check every model):

``"fused"``: one forward and one backward over all ``f*m`` samples. For a layer
:math:`z = W a + b`, file ``i``'s weight gradient is :math:`\sum_{j \in i} \delta_j a_j^\top`
with :math:`\delta_j = \partial L_i / \partial z_j`. When samples do not interact in the forward,
:math:`\delta_j` of the *summed* loss :math:`\sum_i L_i` equals that of file ``i``'s own loss, so
one backward pass to each layer's output (no parameter gradients) gives every
:math:`\delta_j`, and one batched product per layer gives all ``f`` gradients:
``bmm`` for Linear; for convolutions an unfold + ``bmm`` (1-D), a grouped-convolution weight
gradient with the files as groups (small 2-D maps) or the weight-gradient kernel per file (large
2-D maps), see :func:`conv_strategy`; :math:`\sum g \odot \hat x` for Group/LayerNorm. The loss
is formed as ``f * loss_fn(all samples)`` when ``loss_fn.sample_mean`` is true (our losses),
else as the sum of ``f`` per-file losses. Requires every trainable parameter to be the weight or
bias of a Linear, Conv1d/2d, GroupNorm or LayerNorm, no BatchNorm, no in-place modules, and a
forward in which samples do not interact. The structure is checked on every call; in ``"auto"``
mode the first call also checks the result against the loop (a custom forward that mixes
samples is caught there, with a warning, and the model falls back to vmap).

``"vmap"``: ``torch.func.vmap`` over ``grad`` of a ``functional_call``, one vectorised pass.
Works for any vmap-able model, including BatchNorm in training mode.

``"loop"``: one autograd pass per file; always works.

``method="auto"`` takes, per model and train/eval mode, the first of fused -> vmap -> loop that
applies. The choice depends on structure, never on timing, so a run repeats bit for bit.

Measured with ``benchmarks/pergrad.py`` (b = 250 in f = 25 files of 10, one thread, CPU time,
median ratio to one plain forward+backward of the same 250 samples, on the shared 2-core box):

============  =====  =====  =====
model         fused  vmap   loop
============  =====  =====  =====
logreg        1.44   4.5    14
mlp           1.47   3.2    9.2
cnn1d         1.35   2.0    8.5
lenet 8x8     1.56   2.1    4.9
lenet 32x32   1.10   1.6    1.4
resnet18 w=4  1.40   1.8    1.7
============  =====  =====  =====

Fused is the fastest path for every model here, so ``"auto"`` never needs a timing-based choice.

BatchNorm policy: per-file gradients never update running statistics (a worker's statistics stay
with the worker in ByzShield/DETOX), and in training mode BatchNorm normalises each file with its
own batch statistics (each worker forwards its files separately). ``.grad`` fields are never
touched.
"""

from __future__ import annotations

import math
import warnings
import weakref
from contextlib import contextmanager
from typing import Callable, Iterator, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap

__all__ = [
    "METHODS",
    "per_file_gradients",
    "choose_method",
    "conv_strategy",
    "fused_unsupported_reason",
    "flat_params",
    "set_flat_params",
    "flat_grad",
    "num_params",
]

METHODS = ("fused", "vmap", "loop")
Method = Literal["auto", "fused", "vmap", "loop"]
LossFn = Callable[[Tensor, Tensor], Tensor]

# Above this many elements, a 1-D convolution's per-file weight gradient uses the grouped-convolution
# backward instead of materialising the unfolded input (memory bound; same result).
UNFOLD_MAX_ELEMENTS = 1 << 24
# Force one convolution strategy ("unfold", "grouped", "loop"); None: `conv_strategy` decides.
CONV_STRATEGY: str | None = None

# Relative tolerance of the one-time check of the fused path against the loop in "auto" mode.
_VERIFY_RTOL = 1e-3


class _Unsupported(ValueError):
    """The fused path cannot handle this model/input (auto mode falls back)."""


def num_params(model: nn.Module) -> int:
    """Length ``d`` of the flat parameter vector."""
    return sum(p.numel() for p in model.parameters())


def flat_params(model: nn.Module) -> Tensor:
    """A detached copy of the parameters as one flat vector (``parameters_to_vector`` order)."""
    return nn.utils.parameters_to_vector(model.parameters()).detach().clone()


@torch.no_grad()
def set_flat_params(model: nn.Module, vec: Tensor) -> None:
    """Copy ``vec`` into the parameters (in place; the model never aliases ``vec``)."""
    d = num_params(model)
    if vec.ndim != 1 or vec.numel() != d:
        raise ValueError(f"set_flat_params: vec must be 1-D with {d} entries, got shape {tuple(vec.shape)}")
    i = 0
    for p in model.parameters():
        p.copy_(vec[i : i + p.numel()].view_as(p))
        i += p.numel()


def flat_grad(model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor) -> Tensor:
    """Flat gradient of ``loss_fn(model(x), y)`` (zeros for frozen or unused parameters).

    Uses ``torch.autograd.grad``, so ``.grad`` fields are left alone. BatchNorm layers in
    training mode run as usual (batch statistics, running statistics updated).
    """
    params = list(model.parameters())
    with torch.enable_grad():
        loss = loss_fn(model(x), y)
        return _flatten_grads(params, loss)


def _flatten_grads(params: list[nn.Parameter], loss: Tensor) -> Tensor:
    req = [p for p in params if p.requires_grad]
    gs = iter(torch.autograd.grad(loss, req, allow_unused=True)) if req else iter(())
    parts = []
    for p in params:
        g = next(gs) if p.requires_grad else None
        parts.append(torch.zeros(p.numel(), dtype=p.dtype, device=p.device) if g is None else g.reshape(-1))
    return torch.cat(parts) if parts else torch.zeros(0)


def per_file_gradients(
    model: nn.Module,
    loss_fn: LossFn,
    x_files: Tensor,
    y_files: Tensor,
    *,
    method: Method = "auto",
    return_loss: bool = False,
) -> Tensor | tuple[Tensor, float]:
    """Per-file gradients ``(f, d)``: row ``i`` is the flat gradient of ``loss_fn`` (a mean over
    samples) on file ``i`` = ``(x_files[i], y_files[i])``. See the module docstring for methods.

    Gradients come from ``torch.autograd.grad`` / ``torch.func``: ``.grad`` fields and BatchNorm
    running statistics are left untouched. Frozen parameters get zero columns.
    """
    if method not in ("auto", *METHODS):
        raise ValueError(f"per_file_gradients: method must be one of {('auto', *METHODS)}, got method={method!r}")
    if x_files.ndim < 2 or y_files.ndim < 2 or x_files.shape[:2] != y_files.shape[:2]:
        raise ValueError(
            "per_file_gradients: x_files must be (f, m, *input_shape) and y_files (f, m, ...), got "
            f"x_files {tuple(x_files.shape)} and y_files {tuple(y_files.shape)}"
        )
    if x_files.shape[0] < 1 or x_files.shape[1] < 1:
        raise ValueError(f"per_file_gradients: need f >= 1 files of m >= 1 samples, got {tuple(x_files.shape[:2])}")
    if method == "auto":
        G, loss = _auto(model, loss_fn, x_files, y_files)
    else:
        G, loss = _RUN[method](model, loss_fn, x_files, y_files)
    return (G, float(loss)) if return_loss else G


# ------------------------------------------------------------------------------------ selection

_CHOICE: "weakref.WeakKeyDictionary[nn.Module, dict[bool, str]]" = weakref.WeakKeyDictionary()


def choose_method(model: nn.Module) -> str:
    """The method ``"auto"`` uses for ``model`` in its current train/eval mode: "fused" when the
    structure allows (verified against the loop at the first call), else "vmap" (else "loop" if
    vmap raised)."""
    cached = _CHOICE.get(model, {}).get(model.training)
    if cached is not None:
        return cached
    return "fused" if fused_unsupported_reason(model) is None else "vmap"


def _auto(
    model: nn.Module, loss_fn: LossFn, x_files: Tensor, y_files: Tensor
) -> tuple[Tensor, Tensor]:
    cached = _CHOICE.get(model, {}).get(model.training)
    if cached is not None:
        try:
            return _RUN[cached](model, loss_fn, x_files, y_files)
        except _Unsupported:  # the model changed since the choice (e.g. a module swapped): choose again
            pass
    result, chosen = None, "loop"
    reference = None
    if fused_unsupported_reason(model) is None:
        try:
            fused, fused_loss = _fused(model, loss_fn, x_files, y_files)
            reference = _loop(model, loss_fn, x_files, y_files)
            scale = reference[0].abs().max().clamp_min(1e-12)
            if torch.isfinite(fused).all() and (fused - reference[0]).abs().max() <= _VERIFY_RTOL * scale:
                result, chosen = (fused, fused_loss), "fused"
            else:
                warnings.warn(
                    f"per_file_gradients: fused gradients of {type(model).__name__} disagree with the "
                    "loop (does the forward mix samples?); using vmap/loop for this model",
                    RuntimeWarning,
                    stacklevel=3,
                )
        except _Unsupported:
            pass
    if result is None:
        try:
            result, chosen = _vmap(model, loss_fn, x_files, y_files), "vmap"
        except Exception:  # vmap cannot trace this model (randomness, data-dependent control flow, ...)
            result = reference if reference is not None else _loop(model, loss_fn, x_files, y_files)
            chosen = "loop"
    _CHOICE.setdefault(model, {})[model.training] = chosen
    return result


# --------------------------------------------------------------------------------------- loop


def _loop(model: nn.Module, loss_fn: LossFn, x_files: Tensor, y_files: Tensor) -> tuple[Tensor, Tensor]:
    params = list(model.parameters())
    rows, losses = [], []
    with _bn_file_statistics(model), torch.enable_grad():
        for i in range(x_files.shape[0]):
            loss = loss_fn(model(x_files[i]), y_files[i])
            losses.append(loss.detach())
            rows.append(_flatten_grads(params, loss))
    return torch.stack(rows), torch.stack(losses).mean()


# --------------------------------------------------------------------------------------- vmap


def _vmap(model: nn.Module, loss_fn: LossFn, x_files: Tensor, y_files: Tensor) -> tuple[Tensor, Tensor]:
    named = dict(model.named_parameters())
    params = {k: v.detach() for k, v in named.items()}
    buffers = dict(model.named_buffers())

    def file_loss(p: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        return loss_fn(functional_call(model, (p, buffers), (x,)), y)

    with _bn_file_statistics(model), torch.enable_grad():
        grads, losses = vmap(grad_and_value(file_loss), in_dims=(None, 0, 0))(params, x_files, y_files)
    f = x_files.shape[0]
    return torch.cat(
        [grads[k].reshape(f, -1) if v.requires_grad else torch.zeros_like(grads[k]).reshape(f, -1) for k, v in named.items()],
        dim=1,
    ), losses.detach().mean()


@contextmanager
def _bn_file_statistics(model: nn.Module) -> Iterator[None]:
    """BatchNorm in training mode: normalise with the batch's statistics, update nothing.

    ``track_running_stats=False`` makes a training-mode BatchNorm pass ``None`` running buffers
    to ``F.batch_norm`` (batch statistics, no in-place update, which vmap could not batch).
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    saved = [m.track_running_stats for m in bns]
    for m in bns:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m, s in zip(bns, saved):
            m.track_running_stats = s


# -------------------------------------------------------------------------------------- fused


def fused_unsupported_reason(model: nn.Module) -> str | None:
    """``None`` if the fused path applies to ``model``'s structure, else why not."""
    for name, mod in model.named_modules():
        label = name or type(mod).__name__
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            return f"{label} is BatchNorm (statistics couple the samples of a file)"
        if getattr(mod, "inplace", False):
            return f"{label} ({type(mod).__name__}) is in-place"
        own = [n for n, p in mod.named_parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        rule = _RULES.get(type(mod))
        if rule is None:
            return f"{label} ({type(mod).__name__}) has parameters and no fused rule"
        if set(own) - {"weight", "bias"}:
            return f"{label} has parameters {own}, fused handles weight/bias"
        if isinstance(mod, (nn.Conv1d, nn.Conv2d)) and (mod.padding_mode != "zeros" or isinstance(mod.padding, str)):
            return f"{label}: padding {mod.padding!r} / padding_mode {mod.padding_mode!r} (needs numeric zero padding)"
    return None


class _Plan:
    """What the fused path needs from a model, computed once per model (and parameter set)."""

    def __init__(self, model: nn.Module) -> None:
        self.params = list(model.parameters())
        self.key = _plan_key(model, self.params)
        self.reason = fused_unsupported_reason(model)
        self.hooked = [
            mod for mod in model.modules()
            if type(mod) in _RULES and any(p.requires_grad for p in mod.parameters(recurse=False))
        ]


def _plan_key(model: nn.Module, params: list[nn.Parameter]) -> tuple:
    return (model.training, tuple((id(p), p.requires_grad) for p in params))


_PLANS: "weakref.WeakKeyDictionary[nn.Module, _Plan]" = weakref.WeakKeyDictionary()


def _plan(model: nn.Module) -> _Plan:
    """Cached :class:`_Plan`; rebuilt when the parameters, ``requires_grad`` or mode change."""
    plan = _PLANS.get(model)
    if plan is None or plan.key != _plan_key(model, list(model.parameters())):
        plan = _PLANS[model] = _Plan(model)
    return plan


def _fused(model: nn.Module, loss_fn: LossFn, x_files: Tensor, y_files: Tensor) -> tuple[Tensor, Tensor]:
    plan = _plan(model)
    if plan.reason is not None:
        raise _Unsupported(f"per_file_gradients(method='fused'): {plan.reason}")
    f, m = x_files.shape[:2]
    n = f * m
    records: list[tuple[nn.Module, Tensor, Tensor]] = []

    def hook(mod: nn.Module, inputs: tuple[Tensor, ...], out: Tensor) -> None:
        records.append((mod, inputs[0], out))

    handles = [mod.register_forward_hook(hook) for mod in plan.hooked]
    try:
        with torch.enable_grad():
            out = model(x_files.reshape(n, *x_files.shape[2:]))
    finally:
        for h in handles:
            h.remove()
    for mod, a, z in records:
        if a.shape[0] != n or z.shape[0] != n or not z.requires_grad:
            raise _Unsupported(f"{type(mod).__name__} saw a batch of {a.shape[0]} rows, expected {n}")
    with torch.enable_grad():
        if getattr(loss_fn, "sample_mean", False):  # sum of per-file means = f * mean over all
            loss = loss_fn(out, y_files.reshape(n, *y_files.shape[2:])) * f
        else:
            out_f = out.reshape(f, m, *out.shape[1:])
            loss = torch.stack([loss_fn(out_f[i], y_files[i]) for i in range(f)]).sum()
    grads = torch.autograd.grad(loss, [z for _, _, z in records], allow_unused=True) if records else ()
    pieces: dict[int, Tensor] = {}
    for (mod, a, _), g in zip(records, grads):
        if g is None:
            continue
        for pname, value in _RULES[type(mod)](mod, a.detach(), g, f):
            p = getattr(mod, pname)
            if p.requires_grad:  # a module called twice (weight sharing): contributions add up
                pieces[id(p)] = pieces[id(p)] + value if id(p) in pieces else value
    ref = plan.params[0] if plan.params else x_files
    rows = [
        pieces[id(p)].reshape(f, -1) if id(p) in pieces
        else torch.zeros(f, p.numel(), dtype=ref.dtype, device=ref.device)
        for p in plan.params
    ]
    G = torch.cat(rows, dim=1) if rows else torch.zeros(f, 0, dtype=ref.dtype, device=ref.device)
    return G, loss.detach() / f


def _linear_rule(mod: nn.Linear, a: Tensor, g: Tensor, f: int) -> Iterator[tuple[str, Tensor]]:
    a3 = a.reshape(f, -1, a.shape[-1])  # (f, m * extra, in)
    g3 = g.reshape(f, -1, g.shape[-1])  # (f, m * extra, out)
    yield "weight", torch.bmm(g3.transpose(1, 2), a3)
    if mod.bias is not None:
        yield "bias", g3.sum(dim=1)


def conv_strategy(mod: nn.Conv1d | nn.Conv2d, a: Tensor, g: Tensor, f: int) -> str:
    """How the fused path computes a convolution's ``f`` weight gradients (same result each way).

    ``"unfold"``: im2col as strided views, one ``bmm`` over files; ``"grouped"``: one
    grouped-convolution weight gradient with the files as groups; ``"loop"``: the library's
    weight-gradient kernel once per file. The choice depends only on shapes and device (so runs are
    bit-for-bit repeatable); thresholds from ``benchmarks/pergrad.py``-style measurements on 2 CPU
    cores: 1-D convolutions favour unfold, small 2-D maps grouped, large 2-D maps (>= 256 output
    positions or >= 2^20 multiply-adds per file) the per-file kernel. CUDA: grouped (one launch;
    not measured here). ``CONV_STRATEGY`` overrides (tests).
    """
    if CONV_STRATEGY is not None:
        return CONV_STRATEGY
    if a.device.type != "cpu":
        return "grouped"
    n, c_in = a.shape[:2]
    positions, taps = math.prod(g.shape[2:]), math.prod(mod.kernel_size)
    if a.ndim == 3:
        return "unfold" if n * c_in * positions * taps <= UNFOLD_MAX_ELEMENTS else "grouped"
    per_file = (n // f) * positions * (c_in // mod.groups) * taps * g.shape[1]
    return "loop" if positions >= 256 or per_file >= 1 << 20 else "grouped"


def _conv_rule(mod: nn.Conv1d | nn.Conv2d, a: Tensor, g: Tensor, f: int) -> Iterator[tuple[str, Tensor]]:
    nd = a.ndim - 2
    n, c_in = a.shape[:2]
    c_out, m, groups = g.shape[1], n // f, mod.groups
    k, s, p, d = mod.kernel_size, mod.stride, mod.padding, mod.dilation
    out_sp = tuple(g.shape[2:])
    strategy = conv_strategy(mod, a, g, f)
    if strategy == "unfold":
        # im2col as strided views: (n, c_in, *out_sp, *k); positions of a file become the K dim
        u = F.pad(a, [q for pad in reversed(p) for q in (pad, pad)])
        for i in range(nd):
            u = u.unfold(2 + i, d[i] * (k[i] - 1) + 1, s[i])
        if any(di != 1 for di in d):
            u = u[(Ellipsis, *[slice(None, None, di) for di in d])]
        if groups == 1:
            # (f, m * positions, c_out)^T @ (f, m * positions, c_in * k): one bmm for all files
            sp = tuple(range(2, 2 + nd))
            u = u.permute(0, *sp, 1, *range(2 + nd, 2 + 2 * nd)).reshape(f, -1, c_in * math.prod(k))
            gg = g.permute(0, *sp, 1).reshape(f, -1, c_out)
            w = torch.bmm(gg.transpose(1, 2), u)  # (f, c_out, c_in * k): the weight's layout
        else:
            u = u.reshape(f, m, groups, c_in // groups, *out_sp, *k)
            gg = g.reshape(f, m, groups, c_out // groups, *out_sp)
            sp, kk = "xyz"[:nd], "klq"[:nd]
            w = torch.einsum(f"fmgo{sp},fmgc{sp}{kk}->fgoc{kk}", gg, u)
    elif strategy == "grouped":
        # files as groups: input (m, f*c_in, ...), grad (m, f*c_out, ...), groups f*groups
        a2 = a.reshape(f, m, c_in, *a.shape[2:]).transpose(0, 1).reshape(m, f * c_in, *a.shape[2:])
        g2 = g.reshape(f, m, c_out, *out_sp).transpose(0, 1).reshape(m, f * c_out, *out_sp)
        weight = mod.weight.detach().repeat(f, *([1] * (nd + 1)))
        w = torch.ops.aten.convolution_backward(
            g2, a2, weight, None, list(s), list(p), list(d), False, [0] * nd, f * groups, [False, True, False]
        )[1]
    else:
        weight = mod.weight.detach()
        w = torch.stack([
            torch.ops.aten.convolution_backward(
                g[i * m : (i + 1) * m], a[i * m : (i + 1) * m], weight, None, list(s), list(p), list(d),
                False, [0] * nd, groups, [False, True, False],
            )[1]
            for i in range(f)
        ])
    yield "weight", w.reshape(f, *mod.weight.shape)
    if mod.bias is not None:
        yield "bias", g.reshape(f, m, c_out, -1).sum(dim=(1, 3))


def _groupnorm_rule(mod: nn.GroupNorm, a: Tensor, g: Tensor, f: int) -> Iterator[tuple[str, Tensor]]:
    n, c = a.shape[:2]
    if mod.weight is not None:
        xhat = F.group_norm(a, mod.num_groups, eps=mod.eps)
        yield "weight", (g * xhat).reshape(f, n // f, c, -1).sum(dim=(1, 3))
    if mod.bias is not None:
        yield "bias", g.reshape(f, n // f, c, -1).sum(dim=(1, 3))


def _layernorm_rule(mod: nn.LayerNorm, a: Tensor, g: Tensor, f: int) -> Iterator[tuple[str, Tensor]]:
    shape = tuple(mod.normalized_shape)
    if mod.weight is not None:
        xhat = F.layer_norm(a, shape, eps=mod.eps)
        yield "weight", (g * xhat).reshape(f, -1, *shape).sum(dim=1)
    if mod.bias is not None:
        yield "bias", g.reshape(f, -1, *shape).sum(dim=1)


_RULES: dict[type, Callable[..., Iterator[tuple[str, Tensor]]]] = {
    nn.Linear: _linear_rule,
    nn.Conv1d: _conv_rule,
    nn.Conv2d: _conv_rule,
    nn.GroupNorm: _groupnorm_rule,
    nn.LayerNorm: _layernorm_rule,
}

_RUN: dict[str, Callable[[nn.Module, LossFn, Tensor, Tensor], tuple[Tensor, Tensor]]] = {
    "fused": _fused,
    "vmap": _vmap,
    "loop": _loop,
}
