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
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Real
from typing import Any, Mapping

import torch
from torch import Tensor

from ._select import coordinate_median, partition_rows
from .registry import AggregatorError, ConstraintError, NonFiniteError

__all__ = ["VARIANTS", "DStarResult", "dstar_filter", "filter_stats"]

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


@dataclass(frozen=True)
class _Settings:
    """The checked parameters of one call. ``ratio`` is sqrt(b_v / b) (1 without batch sizes).
    ``buckets`` is checked by variant E once the non-finite rows are dropped, so too many
    non-finite rows is reported before a bad ``buckets``."""

    k: int
    f: int
    lam: float
    ratio: float
    allow_small_k: bool
    buckets: Any
    generator: torch.Generator | None


# ---------------------------------------------------------------- building blocks


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


def _bucket_count(s: _Settings, kept: int, f_left: int) -> int:
    """Variant E's number of buckets for ``kept`` finite arrivals (``f_left`` Byzantine left)."""
    if s.buckets is None:
        return min(kept, 2 * f_left + 1)
    nb = _check_int("buckets", s.buckets, 1)
    if nb > s.k:
        raise ConstraintError(f"{_NAME}: buckets must be <= k, got buckets={nb}, k={s.k}")
    if not s.allow_small_k and nb < 2 * s.f + 1:
        raise ConstraintError(
            f"{_NAME}: variant E requires buckets >= 2f + 1 (each Byzantine spoils one "
            f"bucket), got buckets={nb}, f={s.f}"
        )
    return min(nb, kept)  # rows rejected as non-finite leave fewer arrivals to bucket


# ---------------------------------------------------------------- the parts a variant picks

# a center: (finite arrivals, g_v or None, settings, Byzantine left among them) -> (d,)
Center = Callable[[Tensor, Tensor | None, _Settings, int], Tensor]
# a reference scale: (deviations, g_v or None, center, sqrt(b_v/b)) -> r
Scale = Callable[[Tensor, Tensor | None, Tensor, float], float]


def _median_with_validation(x: Tensor, g_v: Tensor | None, s: _Settings, f_left: int) -> Tensor:
    """A, C: CwMed of the arrivals and ``g_v`` (the arrivals alone when ``g_v`` is None)."""
    ens = x if g_v is None else torch.cat([x, g_v[None]], dim=0)
    return coordinate_median(ens).to(x.device)


def _validation_anchor(x: Tensor, g_v: Tensor, s: _Settings, f_left: int) -> Tensor:
    """B: the validation gradient itself."""
    return g_v.clone()


def _median_of_aggregators(x: Tensor, g_v: Tensor, s: _Settings, f_left: int) -> Tensor:
    """D: CwMed of (CwMed, CwTM_f, g_v)."""
    members = torch.stack([
        coordinate_median(x).to(x.device), _trimmed_mean(x, f_left).to(x.device), g_v,
    ])
    return coordinate_median(members).to(x.device)


def _median_of_bucket_means(x: Tensor, g_v: Tensor, s: _Settings, f_left: int) -> Tensor:
    """E: CwMed of the bucket means of the arrivals."""
    nb = _bucket_count(s, x.shape[0], f_left)
    return coordinate_median(_bucket_means(x, nb, s.generator)).to(x.device)


def _median_deviation(dev: Tensor, g_v: Tensor | None, center: Tensor, ratio: float) -> float:
    """B, C: the median of the deviations."""
    return float(_midpoint_median_1d(dev))


def _validation_deviation(dev: Tensor, g_v: Tensor, center: Tensor, ratio: float) -> float:
    """A, D, E: ``||g_v - m|| * sqrt(b_v/b)``; the median deviation when that is exactly 0."""
    scale = float(torch.linalg.vector_norm(g_v - center)) * ratio
    if scale == 0.0:
        return _median_deviation(dev, g_v, center, ratio)
    return scale


@dataclass(frozen=True)
class _Variant:
    """What a variant is made of: a one-line description, its center and its reference scale."""

    about: str
    center: Center
    scale: Scale
    needs_validation: bool = True
    takes_buckets: bool = False


_RULES: dict[str, _Variant] = {
    "A": _Variant(
        "dSTAR-I: CwMed(arrivals + g_v), threshold lam * ||g_v - m|| * sqrt(b_v/b)",
        _median_with_validation, _validation_deviation,
    ),
    "B": _Variant(
        "anchor g_v, threshold lam * median ||g_i - g_v||", _validation_anchor, _median_deviation,
    ),
    "C": _Variant(
        "CwMed(arrivals + g_v), threshold lam * median ||g_i - m||",
        _median_with_validation, _median_deviation, needs_validation=False,
    ),
    "D": _Variant(
        "CwMed(CwMed, CwTM_f, g_v), threshold lam * ||g_v - m|| * sqrt(b_v/b)",
        _median_of_aggregators, _validation_deviation,
    ),
    "E": _Variant(
        "median of bucket means, threshold lam * ||g_v - m|| * sqrt(b_v/b)",
        _median_of_bucket_means, _validation_deviation, takes_buckets=True,
    ),
}

VARIANTS: dict[str, str] = {name: rule.about for name, rule in _RULES.items()}


def _variant_names(keep: Callable[[_Variant], bool]) -> str:
    return ", ".join(name for name, rule in _RULES.items() if keep(rule))


# ---------------------------------------------------------------- checks


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConstraintError(f"{_NAME}: {name} must be an integer, got {name}={value!r}")
    if value < low:
        raise ConstraintError(f"{_NAME}: {name} must be >= {low}, got {name}={value}")
    return int(value)


def _check_arrivals(arrivals: Any) -> Tensor:
    if not isinstance(arrivals, Tensor) or arrivals.dim() != 2 or arrivals.shape[0] < 1:
        shape = tuple(arrivals.shape) if isinstance(arrivals, Tensor) else type(arrivals).__name__
        raise AggregatorError(f"{_NAME}: arrivals must be a (k, d) tensor with k >= 1, got {shape}")
    if not arrivals.is_floating_point():
        raise AggregatorError(f"{_NAME}: arrivals must be float32 or float64, got {arrivals.dtype}")
    return arrivals


def _check_variant(variant: Any) -> str:
    name = str(variant).upper()
    if name not in _RULES:
        raise AggregatorError(f"{_NAME}: unknown variant {variant!r}; allowed: {sorted(VARIANTS)}")
    return name


def _check_validation(validation: Any, name: str, arrivals: Tensor) -> Tensor | None:
    """The trusted validation gradient in the arrivals' dtype and device (None only where the
    variant runs without one)."""
    if validation is None:
        if _RULES[name].needs_validation:
            raise AggregatorError(
                f"{_NAME}: variant {name} needs a validation gradient; only variant "
                f"{_variant_names(lambda rule: not rule.needs_validation)} runs without one"
            )
        return None
    d = arrivals.shape[1]
    if not isinstance(validation, Tensor) or validation.shape != (d,):
        shape = (
            tuple(validation.shape) if isinstance(validation, Tensor) else type(validation).__name__
        )
        raise AggregatorError(f"{_NAME}: validation must be a ({d},) tensor, got {shape}")
    if not bool(torch.isfinite(validation).all()):
        raise NonFiniteError(
            f"{_NAME}: the validation gradient holds NaN/Inf; it is trusted, so this is an error"
        )
    return validation.to(dtype=arrivals.dtype, device=arrivals.device)


def _check_settings(
    k: int, name: str, f: Any, lam: Any, *, batch_size: Any, val_batch_size: Any,
    allow_small_k: bool, num_workers: Any, buckets: Any, generator: torch.Generator | None,
) -> _Settings:
    """Check (k, f, lam, num_workers, batch sizes) and which variant takes buckets, once."""
    f = _check_int("f", f, 0)
    if (
        isinstance(lam, bool) or not isinstance(lam, Real)
        or math.isnan(float(lam)) or float(lam) < 1
    ):
        raise ConstraintError(f"{_NAME}: lam must be a number >= 1 (inf allowed), got lam={lam!r}")
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
    if not _RULES[name].takes_buckets and (buckets is not None or generator is not None):
        raise AggregatorError(
            f"{_NAME}: buckets and generator apply to variant "
            f"{_variant_names(lambda rule: rule.takes_buckets)} only, got variant {name}"
        )
    return _Settings(k, f, float(lam), ratio, allow_small_k, buckets, generator)


def _finite_rows(arrivals: Tensor, f: int) -> tuple[Tensor, Tensor, int]:
    """Non-finite rows are Byzantine (spec P6): the finite rows, their ``(k,)`` mask and how many
    were dropped; more than ``f`` dropped (or all of them) is an error."""
    k = arrivals.shape[0]
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
    return (arrivals if bad == 0 else arrivals[finite]), finite, bad


# ---------------------------------------------------------------- the filter


def _threshold(lam: float, scale: float) -> float:
    """``lam * scale``; ``inf`` for ``lam = inf`` whatever the scale (no ``inf * 0``)."""
    return math.inf if math.isinf(lam) else lam * scale


def _mean_of_kept(x: Tensor, keep: Tensor, center: Tensor, extra: Tensor | None) -> Tensor:
    """The mean of the kept rows (and ``extra``, when given); ``center`` when none is kept."""
    n_keep = int(keep.sum())
    if n_keep == 0:
        return center.clone()
    total = x[keep].sum(dim=0)
    if extra is not None:
        return (total + extra) / (n_keep + 1)
    return total / n_keep


def _over_all_rows(keep: Tensor, dev: Tensor, finite: Tensor, bad: int) -> tuple[Tensor, Tensor]:
    """``keep`` and ``dev`` of the finite rows spread back over all ``k`` (False / inf for the
    non-finite ones)."""
    if bad == 0:
        return keep, dev
    k = finite.shape[0]
    accepted = torch.zeros(k, dtype=torch.bool, device=finite.device)
    accepted[finite] = keep
    deviations = torch.full((k,), math.inf, dtype=dev.dtype, device=dev.device)
    deviations[finite] = dev
    return accepted, deviations


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

    The variants differ only in their center and reference scale (``_RULES``); the threshold
    ``lam * scale`` and the average of the survivors are common to all.
    """
    arrivals = _check_arrivals(arrivals)
    name = _check_variant(variant)
    rule = _RULES[name]
    g_v = _check_validation(validation, name, arrivals)
    s = _check_settings(
        arrivals.shape[0], name, f, lam, batch_size=batch_size, val_batch_size=val_batch_size,
        allow_small_k=allow_small_k, num_workers=num_workers, buckets=buckets, generator=generator,
    )
    x, finite, bad = _finite_rows(arrivals, s.f)

    center = rule.center(x, g_v, s, s.f - bad)
    dev = torch.linalg.vector_norm(x - center, dim=1)
    scale = rule.scale(dev, g_v, center, s.ratio)
    threshold = _threshold(s.lam, scale)
    keep = dev <= threshold
    gradient = _mean_of_kept(x, keep, center, g_v if include_val_in_mean else None)

    accepted, deviations = _over_all_rows(keep, dev, finite, bad)
    return DStarResult(
        gradient=gradient, accepted=accepted, center=center, threshold=threshold,
        deviations=deviations, variant=name, scale=scale, nonfinite=bad,
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
