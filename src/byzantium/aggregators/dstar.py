r"""dSTAR-I (interpretation): the first-k ensemble-median deviation filter of dSTAR.

dSTAR (Yan, Chaudhari, Kleinrock, "dSTAR: Straggler Tolerant and Byzantine Resilient Distributed
SGD", arXiv 2412.07151, NeurIPS 2024 AdvML-Frontiers workshop) waits for the first ``k`` of ``n``
gradients, measures each one's deviation from an "ensemble median" against a gradient the server
computes on its own trusted validation data, filters, and averages the survivors. Only the
abstract and summaries were readable, so **this is an interpretation, not the paper's verified
rule** (shared/papers/dstar_byzsgd.md §1.3, pitfall P1). Never report its numbers as the paper's.

Variant ``"A"`` (default, dSTAR-I, spec §1.3), with arrivals :math:`g_1..g_k` and validation
gradient :math:`g_v`:

.. math::
    m = \mathrm{CwMed}(g_1, \dots, g_k, g_v) \quad (\text{midpoint for even counts}),\qquad
    \delta_i = \lVert g_i - m \rVert,\qquad
    r = \lVert g_v - m \rVert \sqrt{b_v / b},

keep :math:`S = \{i : \delta_i \le \lambda r\}` and return :math:`G = \frac{1}{|S|}\sum_{i \in S}
g_i` (``m`` if :math:`S = \emptyset`). If :math:`r = 0` exactly, :math:`r := \mathrm{median}_i
\delta_i`. The factor :math:`\sqrt{b_v/b}` rescales the validation noise to a worker's batch (P3).

Alternatives kept switchable (spec §1.4), all O(k d):

* ``"B"``: anchor :math:`g_v`; :math:`\delta_i = \lVert g_i - g_v\rVert`; scale
  :math:`\mathrm{median}_j \delta_j`; ``center`` = :math:`g_v` (FLTrust-like).
* ``"C"``: center as A (or the median of the arrivals alone when ``validation is None``); scale
  :math:`\mathrm{median}_j \delta_j`.
* ``"D"``: :math:`m = \mathrm{CwMed}(\mathrm{CwMed}(g_{1..k}), \mathrm{CwTM}_f(g_{1..k}), g_v)`,
  an ensemble of aggregators; scale as A.
* ``"E"``: :math:`m` = coordinate median of ``buckets`` bucket means of the arrivals (contiguous
  buckets in the given order, or shuffled with ``generator``); scale as A. Unlike A-D, E depends
  on the row order through the bucketing.

Non-finite arrival rows are Byzantine by definition: they are rejected and counted against ``f``
(more than ``f`` of them is a :class:`~byzantium.aggregators.registry.NonFiniteError`). Nothing here
is registered with the aggregator registry: the rule needs a per-step trusted validation gradient,
so it is not a plain ``(n, d) -> (d,)`` rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Any, Mapping

import torch
from torch import Tensor

from ._select import coordinate_median, partition_rows
from .registry import AggregatorError, ConstraintError, NonFiniteError

__all__ = ["VARIANTS", "DStarResult", "dstar_filter", "filter_stats"]

VARIANTS: dict[str, str] = {
    "A": "dSTAR-I: CwMed(arrivals + g_v), threshold lam * ||g_v - m|| * sqrt(b_v/b)",
    "B": "anchor g_v, threshold lam * median ||g_i - g_v||",
    "C": "CwMed(arrivals + g_v), threshold lam * median ||g_i - m||",
    "D": "CwMed(CwMed, CwTM_f, g_v), threshold lam * ||g_v - m|| * sqrt(b_v/b)",
    "E": "median of bucket means, threshold lam * ||g_v - m|| * sqrt(b_v/b)",
}

_NAME = "dstar_filter"


@dataclass(frozen=True)
class DStarResult:
    """Output of :func:`dstar_filter`.

    ``gradient (d,)``: the aggregate. ``accepted (k,)``: which arrivals were averaged (False for
    non-finite rows). ``center (d,)``: the center the deviations are measured from.
    ``threshold``: ``lam * scale``. ``deviations (k,)``: ``||g_i - center||`` (``inf`` for
    non-finite rows). ``variant``: ``"A"``..``"E"``. ``scale``: the reference deviation ``r``.
    ``nonfinite``: how many rows were rejected for NaN/Inf.
    """

    gradient: Tensor
    accepted: Tensor
    center: Tensor
    threshold: float
    deviations: Tensor
    variant: str
    scale: float
    nonfinite: int


def _midpoint_median_1d(x: Tensor) -> Tensor:
    s = torch.sort(x).values
    n = s.shape[0]
    return (s[(n - 1) // 2] + s[n // 2]) / 2


def _bucket_means(x: Tensor, buckets: int, generator: torch.Generator | None) -> Tensor:
    """Means of ``buckets`` contiguous, near-equal groups of the rows of ``x`` (optionally
    shuffled first). Vectorized with one ``index_add_``."""
    k = x.shape[0]
    rows = torch.arange(k)
    if generator is not None:
        rows = torch.randperm(k, generator=generator)
    # row at position p goes to bucket floor(p * B / k): sizes differ by at most one
    bucket_of = (torch.arange(k) * buckets) // k
    sums = torch.zeros(buckets, x.shape[1], dtype=x.dtype, device=x.device)
    sums.index_add_(0, bucket_of.to(x.device), x[rows.to(x.device)])
    counts = torch.bincount(bucket_of, minlength=buckets).to(x.dtype).to(x.device)
    return sums / counts[:, None]


def _trimmed_mean(x: Tensor, f: int) -> Tensor:
    """Coordinate-wise mean after dropping the ``f`` smallest and ``f`` largest values."""
    n = x.shape[0]
    f = min(f, (n - 1) // 2)
    if f == 0:
        return x.mean(dim=0)
    rest = partition_rows(x, f)[f:]
    m = n - 2 * f
    return partition_rows(rest, m - 1)[:m].mean(dim=0)


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConstraintError(f"{_NAME}: {name} must be an integer, got {name}={value!r}")
    if value < low:
        raise ConstraintError(f"{_NAME}: {name} must be >= {low}, got {name}={value}")
    return int(value)


def dstar_filter(
    arrivals: Tensor,
    validation: Tensor | None,
    *,
    f: int,
    lam: float = 2.0,
    variant: str = "A",
    batch_size: int | None = None,
    val_batch_size: int | None = None,
    include_val_in_mean: bool = False,
    allow_small_k: bool = False,
    num_workers: int | None = None,
    buckets: int | None = None,
    generator: torch.Generator | None = None,
) -> DStarResult:
    r"""dSTAR-I (interpretation): filter the first ``k`` arrivals by their deviation from an
    ensemble median, measured against the server's validation gradient; average the survivors.

    ``arrivals`` ``(k, d)``: the first ``k`` gradients (any order; only A-D are order-invariant).
    ``validation`` ``(d,)``: the server's gradient on trusted data (``None`` only for variant C).
    ``f``: declared Byzantine workers; requires ``k >= 2f + 1`` (rushing adversary, spec P2)
    unless ``allow_small_k``, and ``f < num_workers / 2`` and ``k <= num_workers`` when
    ``num_workers`` is given. ``lam >= 1`` (``inf`` keeps every finite arrival).
    ``batch_size`` / ``val_batch_size`` (both or neither): the reference deviation is scaled by
    :math:`\sqrt{b_v / b}` (P3). ``include_val_in_mean``: average ``g_v`` with the survivors.
    ``buckets`` (variant E only; default ``min(k, 2f+1)``), ``generator`` (E only: shuffle rows
    before bucketing). See the module docstring for the math of each variant. Cost O(k d).
    """
    # ---- inputs
    if not isinstance(arrivals, Tensor) or arrivals.dim() != 2 or arrivals.shape[0] < 1:
        shape = tuple(arrivals.shape) if isinstance(arrivals, Tensor) else type(arrivals).__name__
        raise AggregatorError(f"{_NAME}: arrivals must be a (k, d) tensor with k >= 1, got {shape}")
    if not arrivals.is_floating_point():
        raise AggregatorError(f"{_NAME}: arrivals must be float32 or float64, got {arrivals.dtype}")
    k, d = arrivals.shape
    v = str(variant).upper()
    if v not in VARIANTS:
        raise AggregatorError(f"{_NAME}: unknown variant {variant!r}; allowed: {sorted(VARIANTS)}")
    if validation is None:
        if v != "C":
            raise AggregatorError(
                f"{_NAME}: variant {v} needs a validation gradient; only variant C runs without one"
            )
        g_v = None
    else:
        if not isinstance(validation, Tensor) or validation.shape != (d,):
            shape = tuple(validation.shape) if isinstance(validation, Tensor) else type(validation).__name__
            raise AggregatorError(f"{_NAME}: validation must be a ({d},) tensor, got {shape}")
        if not bool(torch.isfinite(validation).all()):
            raise NonFiniteError(
                f"{_NAME}: the validation gradient holds NaN/Inf; it is trusted, so this is an error"
            )
        g_v = validation.to(dtype=arrivals.dtype, device=arrivals.device)

    # ---- parameters
    f = _check_int("f", f, 0)
    if isinstance(lam, bool) or not isinstance(lam, Real) or math.isnan(float(lam)) or float(lam) < 1:
        raise ConstraintError(f"{_NAME}: lam must be a number >= 1 (inf allowed), got lam={lam!r}")
    lam = float(lam)
    if not allow_small_k and k < 2 * f + 1:
        raise ConstraintError(
            f"{_NAME}: requires k >= 2f + 1 (a rushing adversary's f gradients all arrive first), "
            f"got k={k}, f={f}; pass allow_small_k=True for non-rushing studies"
        )
    if num_workers is not None:
        n = _check_int("num_workers", num_workers, 1)
        if not 2 * f < n:
            raise ConstraintError(f"{_NAME}: requires f < n/2, got n={n}, f={f}")
        if k > n:
            raise ConstraintError(f"{_NAME}: requires k <= n, got k={k}, n={n}")
    if (batch_size is None) != (val_batch_size is None):
        raise ConstraintError(
            f"{_NAME}: give both batch_size and val_batch_size or neither, "
            f"got batch_size={batch_size}, val_batch_size={val_batch_size}"
        )
    ratio = 1.0
    if batch_size is not None:
        b = _check_int("batch_size", batch_size, 1)
        bv = _check_int("val_batch_size", val_batch_size, 1)
        ratio = math.sqrt(bv / b)
    if v != "E" and (buckets is not None or generator is not None):
        raise AggregatorError(f"{_NAME}: buckets and generator apply to variant E only, got variant {v}")

    # ---- non-finite rows are Byzantine (spec P6)
    finite = torch.isfinite(arrivals).all(dim=1)
    bad = int(k - int(finite.sum()))
    if bad > f:
        rows = torch.nonzero(~finite).flatten().tolist()
        raise NonFiniteError(
            f"{_NAME}: {bad} arrivals contain NaN/Inf (rows {rows[:10]}"
            f"{'...' if len(rows) > 10 else ''}) but at most f={f} can be Byzantine"
        )
    if bad == k:
        raise NonFiniteError(f"{_NAME}: all k={k} arrivals contain NaN/Inf")
    x = arrivals if bad == 0 else arrivals[finite]
    f_left = f - bad

    # ---- center and deviations
    if v in ("A", "C"):
        ens = x if g_v is None else torch.cat([x, g_v[None]], dim=0)
        center = coordinate_median(ens).to(x.device)
    elif v == "B":
        center = g_v.clone()
    elif v == "D":
        members = torch.stack([
            coordinate_median(x).to(x.device), _trimmed_mean(x, f_left).to(x.device), g_v,
        ])
        center = coordinate_median(members).to(x.device)
    else:  # E
        kk = x.shape[0]
        if buckets is None:
            nb = min(kk, 2 * f_left + 1)
        else:
            nb = _check_int("buckets", buckets, 1)
            if nb > k:
                raise ConstraintError(f"{_NAME}: buckets must be <= k, got buckets={nb}, k={k}")
            if not allow_small_k and nb < 2 * f + 1:
                raise ConstraintError(
                    f"{_NAME}: variant E requires buckets >= 2f + 1 (each Byzantine spoils one "
                    f"bucket), got buckets={nb}, f={f}"
                )
            nb = min(nb, kk)  # rows rejected as non-finite leave fewer arrivals to bucket
        center = coordinate_median(_bucket_means(x, nb, generator)).to(x.device)
    dev = torch.linalg.vector_norm(x - center, dim=1)

    # ---- reference scale and threshold
    if v in ("B", "C"):
        scale = float(_midpoint_median_1d(dev))
    else:
        scale = float(torch.linalg.vector_norm(g_v - center)) * ratio
        if scale == 0.0:
            scale = float(_midpoint_median_1d(dev))
    threshold = math.inf if math.isinf(lam) else lam * scale
    keep = dev <= threshold

    # ---- average
    n_keep = int(keep.sum())
    if n_keep == 0:
        gradient = center.clone()
    else:
        total = x[keep].sum(dim=0)
        if include_val_in_mean and g_v is not None:
            gradient = (total + g_v) / (n_keep + 1)
        else:
            gradient = total / n_keep

    if bad == 0:
        accepted, deviations = keep, dev
    else:
        accepted = torch.zeros(k, dtype=torch.bool, device=arrivals.device)
        accepted[finite] = keep
        deviations = torch.full((k,), math.inf, dtype=dev.dtype, device=dev.device)
        deviations[finite] = dev
    return DStarResult(
        gradient=gradient, accepted=accepted, center=center, threshold=threshold,
        deviations=deviations, variant=v, scale=scale, nonfinite=bad,
    )


def filter_stats(result: DStarResult, byzantine: Tensor) -> Mapping[str, float]:
    """Per-step log of the filter (spec §1.4): ``kept`` = |S|, the fraction of Byzantine arrivals
    accepted and of honest arrivals rejected. ``byzantine`` is a ``(k,)`` bool mask over the
    arrivals."""
    byz = torch.as_tensor(byzantine, dtype=torch.bool, device=result.accepted.device)
    if byz.shape != result.accepted.shape:
        raise AggregatorError(
            f"filter_stats: byzantine mask must have shape {tuple(result.accepted.shape)}, "
            f"got {tuple(byz.shape)}"
        )
    acc = result.accepted
    nb, nh = int(byz.sum()), int((~byz).sum())
    return {
        "kept": float(acc.sum()),
        "byzantine_accepted": float((acc & byz).sum()) / nb if nb else 0.0,
        "honest_rejected": float((~acc & ~byz).sum()) / nh if nh else 0.0,
    }
