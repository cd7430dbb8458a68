"""Robust aggregation rules and pre-aggregations over stacked ``(n, d)`` gradients.

Public entry point: :func:`get` (``get("trimmed_mean", f=3)(grads)``, ``get("nnm+krum", f=2)``).
Every rule is also importable as a plain function (``byzantium.aggregators.krum``).
"""

from .registry import (
    REGISTRY,
    AggregatorError,
    Constraint,
    ConstraintError,
    NonFiniteError,
)
from .compose import Aggregator, Stage, chain, get, names, parse_spec

import importlib as _importlib
import pkgutil as _pkgutil

# Every public module of this package registers its rules on import; import them all, then export
# each registered function under its registry name (``byzantium.aggregators.krum`` ...).
for _m in _pkgutil.iter_modules(__path__):
    if not _m.name.startswith("_") and _m.name not in ("registry", "compose"):
        _importlib.import_module(f"{__name__}.{_m.name}")
globals().update({_name: _entry.fn for _name, _entry in REGISTRY.items()})

__all__ = [
    "REGISTRY",
    "Aggregator",
    "AggregatorError",
    "Constraint",
    "ConstraintError",
    "NonFiniteError",
    "Stage",
    "chain",
    "get",
    "names",
    "parse_spec",
    "describe",
    *sorted(REGISTRY),
]


def describe() -> list[tuple[str, str, str, str]]:
    """``(name, kind, constraint on (n, f), summary)`` for every registered entry, rules first."""
    rows = sorted(REGISTRY.values(), key=lambda e: (e.kind != "rule", e.name))
    return [(e.name, e.kind, e.constraint.text, e.summary) for e in rows]
