"""Composition: a chain of pre-aggregations ending in a rule, built from code or a string.

``get("nnm+krum", f=2)`` reads like optax's ``chain``: each stage is a pure function and the chain
is their composition. Parameters are routed by name: a keyword goes to every stage whose function
accepts it (``f`` typically goes to all of them); a keyword named after a stage with a dict value
goes to that stage only, e.g. ``get("bucketing+krum", f=1, bucketing={"s": 2})``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from torch import Tensor

from .registry import (
    REGISTRY,
    AggregatorError,
    Entry,
    drop_nonfinite_rows,
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

    The non-finite policy runs once at the entry of the chain (rows with NaN/Inf are counted
    against ``f`` and removed); every stage's ``(n, f)`` constraint is checked on the sizes that
    stage will actually see.
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
        self.f = int(f)

    @property
    def spec(self) -> str:
        return "+".join(st.name for st in self.stages)

    def __repr__(self) -> str:
        return f"Aggregator({self.spec!r}, f={self.f})"

    def check(self, n: int) -> None:
        """Raise :class:`ConstraintError` if some stage cannot run on ``n`` inputs with this ``f``."""
        f = self.f
        for st in self.stages:
            st.entry.constraint.check(self.spec if len(self.stages) == 1 else st.name, n, f)
            if st.entry.maps_nf is not None:
                n, f = st.entry.maps_nf(n, f, dict(st.params))

    def __call__(self, grads: Tensor) -> Tensor:
        grads = validate_stack(self.spec, grads)
        self.check(grads.shape[0])
        grads, f = drop_nonfinite_rows(self.spec, grads, self.f)
        for st in self.stages:
            raw = st.entry.fn.__wrapped_rule__  # type: ignore[attr-defined]
            kwargs = dict(st.params)
            if "f" in st.entry.params:
                kwargs["f"] = f
            n = grads.shape[0]
            grads = raw(grads, **kwargs)
            if st.entry.maps_nf is not None:
                _, f = st.entry.maps_nf(n, f, dict(st.params))
        return grads


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
    extra = set(given) - set(entry.params) - {"f"}
    if extra:
        raise AggregatorError(
            f"unknown parameter(s) {sorted(extra)} for {entry.name}; accepted: {list(entry.params)}"
        )


def get(spec: str, **params: Any) -> Aggregator:
    """Return the aggregator named by ``spec`` (``"median"``, ``"nnm+krum"``, ...).

    >>> import torch
    >>> get("trimmed_mean", f=1)(torch.tensor([[0.0], [1.0], [2.0], [100.0]]))
    tensor([1.5000])
    """
    f = int(params.pop("f", 0))
    return chain(spec, f=f, **params)
