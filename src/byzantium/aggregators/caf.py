r"""CAF, the covariance-bound agnostic filter (Allouah, Guerraoui, Stephan, ICML 2025).

Definition as published in byzfl (``byzfl.CAF``, LPD-EPFL, written by the paper's authors):

1. :math:`c_i = 1` for all ``i``.
2. While :math:`\sum_i c_i > n - 2f`:

   * :math:`\mu_c = \sum_i c_i x_i / \sum_i c_i`;
   * :math:`(\lambda, v)`: top eigenpair of
     :math:`\Sigma_c = \frac{1}{\sum_i c_i}\sum_i c_i (x_i - \mu_c)(x_i - \mu_c)^\top`;
   * :math:`\tau_i = (v^\top (x_i - \mu_c))^2`;
   * :math:`c_i \leftarrow c_i (1 - \tau_i / \max_j \tau_j)`.
3. Return the :math:`\mu_c` whose :math:`\lambda` was the smallest.

Computation. :math:`\Sigma_c` is never formed (it is ``d x d``). With :math:`a = c / \sum c`,
the centred Gram matrix is :math:`K = -\tfrac12 (I - \mathbf 1 a^\top) D (I - a \mathbf 1^\top)`
(:math:`K_{ik} = (x_i - \mu_c)^\top (x_k - \mu_c)`, from the squared distances ``D``: no
cancellation against the norms), and :math:`\Sigma_c` has the non-zero eigenvalues of
:math:`M = C^{1/2} K C^{1/2} / \sum c`. For its top eigenvector ``u``, with
:math:`s = C^{1/2} u`: :math:`v \propto \sum_i s_i (x_i - \mu_c)` and
:math:`\tau = (K s)^2 / (s^\top K s)`. Every iteration is ``O(n^3)`` on ``n x n`` matrices; the
data is read once for ``D`` and once for the returned mean.

Differences from byzfl, on purpose:

* byzfl estimates :math:`(\lambda, v)` with one power-method step from a *random* vector; we use
  the exact top eigenpair of the ``n x n`` matrix (``numpy.linalg.eigh``): deterministic.
* :math:`\max_j \tau_j` runs over the inputs still weighted (:math:`c_j > 0`), as in the classic
  weighted filter; then each round zeroes at least one weight, so at most ``n`` rounds. (Where a
  zero-weight input had the largest projection, byzfl would barely move the weights.)
* ``f = 0`` returns the mean (byzfl's loop does not run and it returns None). If the weighted
  inputs all coincide (:math:`\lambda = 0`), their mean is returned at once.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from ._distances import sq_distances_numpy, weighted_sum_of_rows
from .registry import N_GT_2F, rule

__all__ = ["caf", "caf_weights"]



def _top_eigen(dist: np.ndarray, c: np.ndarray) -> tuple[float, np.ndarray]:
    """Top eigenvalue of the weighted covariance and the projections ``tau`` of every input."""
    total = c.sum()
    a = c / total
    da = dist @ a
    k = -0.5 * (dist - da[:, None] - da[None, :] + a @ da)
    r = np.sqrt(c)
    m = (r[:, None] * k * r[None, :]) / total
    vals, vecs = np.linalg.eigh((m + m.T) / 2)
    lam = max(float(vals[-1]), 0.0)
    s = r * vecs[:, -1]
    ks = k @ s
    denom = float(s @ ks)
    tau = ks**2 / denom if denom > 0 else np.zeros_like(ks)
    return lam, tau


def caf_weights(dist: np.ndarray, f: int) -> np.ndarray:
    """The weights ``c / sum(c)`` of the mean CAF returns, from the squared-distance matrix."""
    n = dist.shape[0]
    c = np.ones(n)
    best_lam, best = np.inf, c / n
    while c.sum() > n - 2 * f:
        lam, tau = _top_eigen(dist, c)
        if lam < best_lam:
            best_lam, best = lam, c / c.sum()
        live = c > 0
        tau_max = tau[live].max()
        if not tau_max > 0:  # the weighted inputs coincide: zero covariance, nothing to filter
            break
        c = np.where(live, c * np.clip(1.0 - tau / tau_max, 0.0, 1.0), 0.0)
    return best


@rule(
    "caf",
    constraint=N_GT_2F,
    summary="covariance-bound agnostic filter: soft-remove weight along the top eigenvector",
    reference=(
        "Allouah, Guerraoui, Stephan, Towards trustworthy federated learning with untrusted "
        "participants, ICML 2025 (byzfl.CAF)"
    ),
)
def caf(grads: Tensor, *, f: int = 0) -> Tensor:
    r"""CAF (see the module docstring): iterative spectral filtering with weights
    :math:`c_i \in [0, 1]` until :math:`\sum_i c_i \le n - 2f`, returning the weighted mean with
    the smallest top covariance eigenvalue seen. ``f = 0`` is the mean. Requires ``n > 2f``.
    """
    if f == 0:
        return grads.mean(dim=0)
    return weighted_sum_of_rows(grads, caf_weights(sq_distances_numpy(grads), f))
