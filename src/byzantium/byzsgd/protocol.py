r"""ByzSGD's pure protocol steps (dstar_byzsgd.md §2.3-2.7), as functions of tensors and integers.

* worker combination (W2): :math:`\tilde\theta_j = \mathrm{CwMed}(\Theta_j)` over the first
  ``q_ps`` models received (midpoint convention for even counts, P5);
* server aggregation (S3): :math:`G_s = \mathrm{MDA}_{f_w}(\Gamma_s)` over the first ``q_w``
  gradients; server step (S4): plain SGD :math:`\theta - \eta G` (faithful mode, P12);
* DMC gather (S5): CwMed of ``q_ps`` models, the server's own included (P13);
* drift: :math:`\max_{s,s'} \|\theta_s - \theta_{s'}\|` over correct servers;
* the synchronous variant's filters (§2.7): Lipschitz filter and outliers filter, with guards.

Medians and MDA come from :mod:`byzantium.aggregators` (non-finite rows are dropped there and
counted against ``f``).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .. import aggregators

__all__ = [
    "combine_models",
    "server_aggregate",
    "sgd_step",
    "server_update",
    "dmc_gather",
    "drift",
    "lipschitz_coefficient",
    "lipschitz_accept",
    "push_history",
    "predicted_model",
    "outliers_bound",
    "outliers_accept",
    "HISTORY_TRIM_AT",
    "HISTORY_KEEP",
]

HISTORY_TRIM_AT = 100  # the prototype trims the Lipschitz history to its last 50 at 100 entries
HISTORY_KEEP = 50


def combine_models(models: Tensor, f_ps: int) -> Tensor:
    """Worker step W2: coordinate-wise median (midpoint) of the ``(q, d)`` models received.

    Each output coordinate lies within the range of the correct models' values when at most
    ``f_ps < q/2`` rows are Byzantine (§2.6), which is what bounds a worker's combined model.
    """
    return aggregators.median(models, f=f_ps)


def server_aggregate(grads: Tensor, f_w: int, rule: str = "mda") -> Tensor:
    """Server step S3: ``MDA_{f_w}`` of the ``(q_w, d)`` gradients received (``rule`` may name any
    registered aggregator, e.g. ``"mean"`` for the vanilla replicated baseline)."""
    if rule == "mean":  # the vanilla baseline: no non-finite policy, divergence propagates
        return grads.mean(dim=0)
    return aggregators.get(rule, f=f_w)(grads)


def sgd_step(theta: Tensor, grad: Tensor, lr: float) -> Tensor:
    """Server step S4: :math:`\\theta - \\eta G` (plain SGD; a new tensor)."""
    return theta - lr * grad


def server_update(
    theta: Tensor, buf: Tensor | None, grad: Tensor, lr: float, *, momentum: float = 0.0,
    weight_decay: float = 0.0,
) -> tuple[Tensor, Tensor | None]:
    r"""Server step S4 with optional weight decay and heavy-ball momentum, as ``torch.optim.SGD``:
    :math:`u = G + \lambda\theta`, :math:`b \leftarrow \mu b + u` (``b = u`` at the first step,
    ``buf is None``), :math:`\theta \leftarrow \theta - \eta b`. Returns ``(theta, buf)`` (new
    tensors; ``buf`` stays ``None`` without momentum).

    ``momentum = weight_decay = 0`` is the paper's plain SGD (:func:`sgd_step`, bit for bit).
    With momentum each server keeps its own buffer, which DMC does not contract (spec P12: a
    documented deviation from the paper, whose servers run plain SGD).
    """
    u = grad if weight_decay == 0.0 else grad + weight_decay * theta
    if momentum == 0.0:
        return sgd_step(theta, u, lr), None
    buf = u.clone() if buf is None else momentum * buf + u
    return theta - lr * buf, buf


def dmc_gather(own: Tensor, received: Tensor, f_ps: int) -> Tensor:
    """Distributed Median Contraction (S5): CwMed of ``own`` (``(d,)``) and the ``(q - 1, d)``
    models received from other servers (P13: the own model counts as one of the ``q_ps``).

    Invariant (§2.6): with at most ``f_ps`` Byzantine rows and ``q >= 2 f_ps + 1``, the result
    lies in the coordinate-wise bounding box of the correct models received.
    """
    return aggregators.median(torch.cat([own[None], received]), f=f_ps)


def drift(models: Tensor) -> float:
    """``max_{s, s'} ||theta_s - theta_s'||`` over the ``(h, d)`` correct models (0 if ``h < 2``).

    Exact pairwise distances (not the matmul path of ``cdist``, which gives ``!= 0`` between
    identical rows).
    """
    if models.shape[0] < 2:
        return 0.0
    dist = torch.cdist(models[None].double(), models[None].double(),
                       compute_mode="donot_use_mm_for_euclid_dist")[0]
    return float(dist.max())


# --------------------------------------------------------------------- synchronous variant (§2.7)


def lipschitz_coefficient(theta: Tensor, theta_prev: Tensor, grad: Tensor, grad_prev: Tensor) -> float | None:
    """Empirical Lipschitz coefficient ``||g - g_prev|| / ||theta - theta_prev||``; ``None`` when the
    models coincide (guard [I]: the prototype would divide by zero; the filter then accepts)."""
    dtheta = float((theta.double() - theta_prev.double()).norm())
    if dtheta == 0.0:
        return None
    return float((grad.double() - grad_prev.double()).norm()) / dtheta


def lipschitz_accept(k: float | None, history: Sequence[float], n_ps: int, f_ps: int) -> bool:
    """Lipschitz filter: accept iff ``k`` is at most the ``(n_ps - f_ps)/n_ps`` quantile of
    ``history`` with ``k`` included (numpy linear percentile at ``100 (n_ps - f_ps) / n_ps``, as
    the prototype; Kardam's filter). ``k is None`` (no movement): accept. By construction about a
    fraction ``f_ps / n_ps`` of i.i.d. honest values is rejected (their fallback costs messages,
    not correctness)."""
    if k is None:
        return True
    if not math.isfinite(k):
        return False
    values = np.asarray([*history, k], dtype=np.float64)
    return bool(k <= np.percentile(values, 100.0 * (n_ps - f_ps) / n_ps))


def push_history(history: list[float], k: float | None) -> None:
    """Append ``k`` to the filter history (every finite value, accepted or not, as the prototype;
    keeping only accepted ones ratchets the quantile down), trimming to the last 50 at 100."""
    if k is None or not math.isfinite(k):
        return
    history.append(k)
    if len(history) >= HISTORY_TRIM_AT:
        del history[:-HISTORY_KEEP]


def predicted_model(theta_prev: Tensor, grad_prev: Tensor, lr: float) -> Tensor:
    """Outliers filter's prediction :math:`\\hat\\theta_j = \\theta_{prev} - \\eta g_{prev}`."""
    return theta_prev - lr * grad_prev


def outliers_bound(lr: float, grad_norm: float, T: int, n_w: int, f_w: int, since_gather: int) -> float:
    r"""The prototype's bound :math:`\eta \|g\| \big(\frac{(3T+2)(n_w-f_w)}{4 f_w} + 2 s\big)`, with
    ``s`` the steps since the last gather (the prototype's ``(t - 1) mod T`` for 1-based ``t``).
    ``f_w = 0``: ``inf`` (the filter is skipped; the formula divides by ``f_w``)."""
    if f_w == 0:
        return math.inf
    return lr * grad_norm * ((3 * T + 2) * (n_w - f_w) / (4 * f_w) + 2 * since_gather)


def outliers_accept(theta: Tensor, theta_pred: Tensor, bound: float) -> bool:
    """Outliers filter: accept iff ``||theta - theta_pred|| <= bound`` (non-finite: reject)."""
    dist = float((theta.double() - theta_pred.double()).norm())
    return math.isfinite(dist) and dist <= bound
