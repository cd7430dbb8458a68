"""Composition: a chain of pre-aggregations ending in a rule, built from code or a string.

``get("nnm+krum", f=2)`` reads like optax's ``chain``: each stage is a pure function and the chain
is their composition. Parameters are routed by name: a keyword goes to every stage whose function
accepts it (``f`` typically goes to all of them); a keyword named after a stage with a dict value
goes to that stage only, e.g. ``get("bucketing+krum", f=1, bucketing={"s": 2})``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Mapping

from torch import Tensor

from .registry import (
    REGISTRY,
    AggregatorError,
    Entry,
    check_f,
    check_output,
    drop_nonfinite_rows,
    drop_nonfinite_rows_masked,
    remap_pivot,
    validate_stack,
)

__all__ = ["Aggregator", "Stage", "get", "chain", "parse_spec"]


@dataclass(frozen=True)
class Stage:
    """One registered step of a chain with the parameters bound to it."""

    entry: Entry
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.entry.name


class Aggregator:
    """A callable ``(n, d) -> (d,)``: pre-aggregations followed by one rule.

    The non-finite policy runs at the entry of the chain (rows with NaN/Inf are counted against
    ``f`` and removed) and again on the output of each pre-aggregation (a row that overflowed
    there, e.g. a bucket mean of values near the float maximum, is a spoiled row); every stage's
    ``(n, f)`` constraint is checked on the sizes that stage will see with finite inputs.
    """

    def __init__(self, stages: list[Stage], f: int = 0) -> None:
        if not stages:
            raise AggregatorError("an aggregator needs at least one stage (a rule)")
        *pre, last = stages
        for st in pre:
            if st.entry.kind != "preaggregation":
                raise AggregatorError(
                    f"{st.name!r} is a rule; only pre-aggregations "
                    f"({', '.join(names('preaggregation'))}) may come before the last stage"
                )
        if last.entry.kind != "rule":
            raise AggregatorError(
                f"the chain must end in a rule ({', '.join(names('rule'))}), got {last.name!r}"
            )
        self.stages = list(stages)
        self.f = check_f(self.spec_of(stages), f)
        for st in self.stages:
            _check_params(st.entry, st.params)
            missing = [p for p in _required(st.entry) if p not in st.params]
            if missing:
                raise AggregatorError(
                    f"{st.name}: missing required parameter(s) {missing}; pass them by name, e.g. "
                    f"get({self.spec_of(stages)!r}, {missing[0]}=...) or "
                    f"{st.name}={{{missing[0]!r}: ...}}"
                )

    @staticmethod
    def spec_of(stages: list[Stage]) -> str:
        return "+".join(st.name for st in stages)

    @property
    def spec(self) -> str:
        return self.spec_of(self.stages)

    def __repr__(self) -> str:
        return f"Aggregator({self.spec!r}, f={self.f})"

    def check(self, n: int) -> None:
        """Raise :class:`ConstraintError` if some stage cannot run on ``n`` inputs with this ``f``."""
        f = self.f
        for i, st in enumerate(self.stages):
            label = self.spec if len(self.stages) == 1 else (
                f"{st.name} (stage {i + 1} of {self.spec!r})"
            )
            st.entry.constraint.check(label, n, f)
            if st.entry.maps_nf is not None:
                n, f = st.entry.maps_nf(n, f, dict(st.params))

    def __call__(self, grads: Tensor) -> Tensor:
        grads = validate_stack(self.spec, grads)
        self.check(grads.shape[0])
        grads, f, kept = drop_nonfinite_rows_masked(self.spec, grads, self.f)
        first = self.stages[0]
        if kept is not None and "pivot" in first.entry.params:
            first = Stage(first.entry, dict(first.params))
            remap_pivot(first.name, first.params, kept)  # type: ignore[arg-type]
        stages = [first, *self.stages[1:]]
        for st in stages:
            raw = st.entry.fn.__wrapped_rule__  # type: ignore[attr-defined]
            kwargs = dict(st.params)
            if "f" in st.entry.params:
                kwargs["f"] = f
            n = grads.shape[0]
            grads = raw(grads, **kwargs)
            if st.entry.maps_nf is not None:
                _, f = st.entry.maps_nf(n, f, dict(st.params))
                # an output row that overflowed (e.g. a bucket mean of values near the float
                # maximum) is a spoiled row: the policy applies again with the f left
                grads, f = drop_nonfinite_rows(f"{self.spec} (after {st.name})", grads, f)
        return check_output(self.spec, grads)


def names(kind: str | None = None) -> list[str]:
    """Registered names, optionally only rules or only pre-aggregations."""
    return sorted(k for k, e in REGISTRY.items() if kind is None or e.kind == kind)


def parse_spec(spec: str) -> list[Entry]:
    """Split ``"nnm+bucketing+krum"`` into registry entries, with a clear error on unknown names."""
    if not isinstance(spec, str) or not spec.strip():
        raise AggregatorError(f"aggregator spec must be a non-empty string, got {spec!r}")
    parts = [p.strip().lower() for p in spec.split("+")]
    entries = []
    for p in parts:
        if p not in REGISTRY:
            raise AggregatorError(
                f"unknown aggregator {p!r} in {spec!r}; rules: {', '.join(names('rule'))}; "
                f"pre-aggregations: {', '.join(names('preaggregation'))}"
            )
        entries.append(REGISTRY[p])
    return entries


def chain(*stages: Stage | str, f: int = 0, **params: Any) -> Aggregator:
    """Build an :class:`Aggregator` from stages (or names) and route ``params`` to them."""
    entries: list[Entry] = []
    bound: list[dict[str, Any]] = []
    for st in stages:
        if isinstance(st, Stage):
            entries.append(st.entry)
            bound.append(dict(st.params))
        else:
            entries.extend(parse_spec(st))
            bound.extend({} for _ in parse_spec(st))
    stage_names = {e.name for e in entries}
    used: set[str] = set()
    for key, value in params.items():
        if key in stage_names and isinstance(value, Mapping):
            for e, b in zip(entries, bound):
                if e.name == key:
                    _check_params(e, value)
                    b.update(value)
            used.add(key)
            continue
        for e, b in zip(entries, bound):
            if key in e.params and key != "f":
                b.setdefault(key, value)
                used.add(key)
    unknown = set(params) - used
    if unknown:
        accepted = sorted({p for e in entries for p in e.params} | {"f"})
        raise AggregatorError(
            f"unknown parameter(s) {sorted(unknown)} for {'+'.join(e.name for e in entries)}; "
            f"accepted: {accepted}"
        )
    return Aggregator([Stage(e, b) for e, b in zip(entries, bound)], f=f)


def _check_params(entry: Entry, given: Mapping[str, Any]) -> None:
    if "f" in given:
        raise AggregatorError(
            f"{entry.name}: f is set once for the whole chain (get(spec, f=...)), not per stage; "
            f"each stage sees the f left after the stages before it"
        )
    extra = set(given) - set(entry.params) - {"f"}
    if extra:
        raise AggregatorError(
            f"unknown parameter(s) {sorted(extra)} for {entry.name}; accepted: {list(entry.params)}"
        )


def _required(entry: Entry) -> list[str]:
    """Keyword parameters of ``entry`` without a default (``f`` excepted: it has a default)."""
    sig = inspect.signature(entry.fn)
    return [
        p.name
        for p in list(sig.parameters.values())[1:]
        if p.default is inspect.Parameter.empty
        and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        and p.name != "f"
    ]


def get(spec: str, **params: Any) -> Aggregator:
    """Return the aggregator named by ``spec`` (``"median"``, ``"nnm+krum"``, ...).

    >>> import torch
    >>> get("trimmed_mean", f=1)(torch.tensor([[0.0], [1.0], [2.0], [100.0]]))
    tensor([1.5000])
    """
    f = params.pop("f", 0)
    return chain(spec, f=f, **params)
