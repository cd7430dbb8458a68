"""One registry for aggregation rules and pre-aggregation steps.

A *rule* maps a stacked ``(n, d)`` tensor to a ``(d,)`` tensor; a *pre-aggregation* maps
``(n, d)`` to ``(m, d)``. Both are pure functions registered with :func:`rule` or
:func:`preaggregation`. The decorators wrap each function with the checks every rule shares:

* input validation (2-D, floating point, at least one row);
* the rule's constraint on ``(n, f)`` (e.g. ``n > 2f``), raising :class:`ConstraintError` that names
  the rule, the constraint and the values given;
* the non-finite policy (see :func:`drop_nonfinite_rows`): rows holding NaN or Inf are counted
  against ``f`` and removed before the rule runs; more than ``f`` such rows is a
  :class:`NonFiniteError`. A rule never silently returns NaN.

The wrapped function keeps the original signature, so ``trimmed_mean(grads, f=3)`` works directly
and through :func:`byzantium.aggregators.get`.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np
import torch
from torch import Tensor

from ..registry import Registry

__all__ = [
    "AggregatorError",
    "ConstraintError",
    "NonFiniteError",
    "Constraint",
    "ANY",
    "N_GT_2F",
    "Entry",
    "REGISTRY",
    "rule",
    "preaggregation",
    "validate_stack",
    "drop_nonfinite_rows",
    "drop_nonfinite_rows_masked",
    "remap_pivot",
    "require",
    "check_f",
    "check_output",
]


class AggregatorError(ValueError):
    """Base class of every error an aggregator raises on bad input or parameters."""


class ConstraintError(AggregatorError):
    """A parameter constraint of a rule (e.g. ``n > 2f``) is violated."""


class NonFiniteError(AggregatorError):
    """More rows hold NaN/Inf than the rule tolerates (``f``)."""


@dataclass(frozen=True)
class Constraint:
    """A condition on ``(n, f)`` with its human-readable form, e.g. ``Constraint("n > 2f", ...)``."""

    text: str
    ok: Callable[[int, int], bool]

    def check(self, name: str, n: int, f: int) -> None:
        if f < 0:
            raise ConstraintError(f"{name}: f must be >= 0, got f={f}")
        if not self.ok(n, f):
            raise ConstraintError(f"{name}: requires {self.text}, got n={n}, f={f}")


ANY = Constraint("n >= 1", lambda n, f: n >= 1)
N_GT_2F = Constraint("n > 2f", lambda n, f: n > 2 * f)
"""An honest strict majority: the constraint of most rules (median, trimmed mean, MDA, ...)."""


@dataclass(frozen=True)
class Entry:
    """A registered rule or pre-aggregation.

    ``maps_nf`` (pre-aggregations only) gives the ``(n, f)`` seen by the next stage, given the
    stage's own ``(n, f)`` and its parameters: e.g. bucketing with size ``s`` turns ``(n, f)`` into
    ``(ceil(n/s), f)`` because each Byzantine input can spoil one bucket.
    """

    name: str
    fn: Callable[..., Tensor]
    kind: Literal["rule", "preaggregation"]
    constraint: Constraint
    reference: str
    summary: str
    maps_nf: Callable[[int, int, dict[str, Any]], tuple[int, int]] | None = None
    params: tuple[str, ...] = field(default_factory=tuple)


REGISTRY: Registry[Entry] = Registry("aggregator", error=AggregatorError)


def require(name: str, cond: bool, what: str) -> None:
    """Raise :class:`ConstraintError` ``"<name>: <what>"`` unless ``cond`` holds."""
    if not cond:
        raise ConstraintError(f"{name}: {what}")


def validate_stack(name: str, grads: Any) -> Tensor:
    """Check that ``grads`` is a floating ``(n, d)`` tensor with ``n >= 1``; return it."""
    if not isinstance(grads, Tensor):
        raise AggregatorError(
            f"{name}: expected a torch.Tensor of shape (n, d), got {type(grads).__name__}"
        )
    if grads.dim() != 2:
        raise AggregatorError(
            f"{name}: expected a stacked (n, d) tensor, got shape {tuple(grads.shape)}"
        )
    if not grads.is_floating_point():
        raise AggregatorError(f"{name}: expected float32 or float64 gradients, got {grads.dtype}")
    if grads.shape[0] < 1:
        raise AggregatorError(f"{name}: expected at least one input row, got n=0")
    return grads


def _all_finite(t: Tensor) -> bool:
    """Exact ``isfinite(t).all()``, with a cheap first try: a finite sum implies finite entries
    (NaN and Inf propagate through a sum); only an infinite/NaN sum, which finite but huge entries
    can also produce, falls back to the elementwise check."""
    if t.numel() == 0:
        return True
    if bool(torch.isfinite(t.sum())):
        return True
    return bool(torch.isfinite(t).all())


def drop_nonfinite_rows(name: str, grads: Tensor, f: int) -> tuple[Tensor, int]:
    """Remove rows that hold NaN or Inf and count them against ``f``.

    Returns the finite rows and the remaining budget ``f - removed``. A row with a single
    non-finite coordinate is malformed as a whole (it came from a faulty or Byzantine sender), so
    the entire row goes. Raises :class:`NonFiniteError` when more than ``f`` rows are malformed:
    the rule's guarantee would no longer hold and returning NaN would poison the model.

    Cost: one row-sum pass in the common all-finite case (a finite row sum implies a finite row);
    the elementwise check runs only on rows whose sum is not finite.
    """
    grads, f_left, _ = drop_nonfinite_rows_masked(name, grads, f)
    return grads, f_left


def drop_nonfinite_rows_masked(
    name: str, grads: Tensor, f: int
) -> tuple[Tensor, int, Tensor | None]:
    """:func:`drop_nonfinite_rows`, also returning the boolean mask of kept rows (``None`` when
    every row is finite and nothing was dropped)."""
    if grads.numel() == 0:
        return grads, f, None
    sums = grads.sum(dim=1)
    suspect = ~torch.isfinite(sums)
    if not bool(suspect.any()):
        return grads, f, None
    finite = torch.ones(grads.shape[0], dtype=torch.bool, device=grads.device)
    idx = torch.nonzero(suspect).flatten()
    finite[idx] = torch.isfinite(grads[idx]).all(dim=1)
    if bool(finite.all()):  # the sums overflowed, the rows are fine
        return grads, f, None
    bad = int((~finite).sum())
    if bad > f:
        rows = torch.nonzero(~finite).flatten().tolist()
        raise NonFiniteError(
            f"{name}: {bad} input rows contain NaN/Inf (rows {rows[:10]}"
            f"{'...' if len(rows) > 10 else ''}) but the rule tolerates at most f={f}"
        )
    return grads[finite], f - bad, finite


def remap_pivot(name: str, kwargs: dict[str, Any], kept: Tensor | None, default: int = 0) -> None:
    """Keep a row-index parameter (``pivot``) pointing at the same input after dropped rows.

    The pivot is the trusted input (e.g. MoNNA's own vector): if it is itself malformed the rule
    cannot run, which is an error, not something to hide by silently pivoting on another row.
    """
    if kept is None:
        return
    p = int(kwargs.get("pivot", default))
    n = kept.shape[0]
    if not -n <= p < n:
        raise ConstraintError(f"{name}: pivot must lie in [0, {n}), got pivot={p}")
    p %= n
    if not bool(kept[p]):
        raise NonFiniteError(f"{name}: the pivot row {p} holds NaN/Inf (the pivot is trusted)")
    kwargs["pivot"] = int(kept[:p].sum())


def check_output(name: str, out: Tensor) -> Tensor:
    """Raise :class:`NonFiniteError` if a rule's output holds NaN/Inf (its inputs were finite, so
    only an overflow of the dtype, e.g. averaging values near the float32 maximum, gets here)."""
    if not _all_finite(out):
        raise NonFiniteError(
            f"{name}: the output overflowed to NaN/Inf although every input row was finite; the "
            f"inputs are too large for {out.dtype} (rescale them or use float64)"
        )
    return out


def check_f(name: str, f: Any) -> int:
    """``f`` as an ``int``; :class:`ConstraintError` unless it is a non-negative integer."""
    if isinstance(f, bool) or not isinstance(f, (int, np.integer)):
        raise ConstraintError(f"{name}: f must be a non-negative integer, got f={f!r}")
    if f < 0:
        raise ConstraintError(f"{name}: f must be >= 0, got f={f}")
    return int(f)


def _param_names(fn: Callable[..., Any]) -> tuple[str, ...]:
    sig = inspect.signature(fn)
    return tuple(p.name for p in list(sig.parameters.values())[1:])


def _register(entry: Entry) -> None:
    if entry.name in REGISTRY:
        raise ValueError(f"aggregator {entry.name!r} registered twice")
    REGISTRY.add(entry.name, entry)


def _guarded(
    name: str, fn: Callable[..., Tensor], constraint: Constraint, is_rule: bool
) -> Callable[..., Tensor]:
    """Wrap ``fn`` with stack validation, the ``(n, f)`` constraint and the non-finite policy
    (and, for rules, the check that the output is finite)."""
    sig = inspect.signature(fn).parameters
    takes_f = "f" in sig
    pivot_default = sig["pivot"].default if "pivot" in sig else None

    @functools.wraps(fn)
    def wrapped(grads: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        grads = validate_stack(name, grads)
        f = check_f(name, kwargs.get("f", 0)) if takes_f else 0
        constraint.check(name, grads.shape[0], f)
        grads, f_left, kept = drop_nonfinite_rows_masked(name, grads, f)
        if pivot_default is not None:
            remap_pivot(name, kwargs, kept, pivot_default)
        if takes_f:
            kwargs["f"] = f_left
        out = fn(grads, *args, **kwargs)
        return check_output(name, out) if is_rule else out

    wrapped.__wrapped_rule__ = fn  # type: ignore[attr-defined]
    return wrapped


def rule(
    name: str,
    *,
    constraint: Constraint = ANY,
    reference: str = "",
    summary: str = "",
) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    """Register an aggregation rule ``fn(grads, *, f=0, **params) -> (d,)``.

    The registered (and returned) function validates the stack, checks ``constraint`` on
    ``(n, f)``, applies the non-finite policy and calls ``fn`` on the finite rows with the reduced
    ``f``.
    """

    def deco(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        wrapped = _guarded(name, fn, constraint, True)
        _register(Entry(name, wrapped, "rule", constraint, reference, summary, None, _param_names(fn)))
        return wrapped

    return deco


def preaggregation(
    name: str,
    *,
    constraint: Constraint = ANY,
    maps_nf: Callable[[int, int, dict[str, Any]], tuple[int, int]] = lambda n, f, p: (n, f),
    reference: str = "",
    summary: str = "",
) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    """Register a pre-aggregation ``fn(grads, *, f=0, **params) -> (m, d)``; see :func:`rule`."""

    def deco(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        wrapped = _guarded(name, fn, constraint, False)
        _register(
            Entry(name, wrapped, "preaggregation", constraint, reference, summary, maps_nf,
                  _param_names(fn))
        )
        return wrapped

    return deco
