"""The straggler modules' error type and their one parameter check.

A model's or policy's numeric parameters are declared with :func:`bounded` (a dataclass field
carrying its bounds) and validated together by :func:`check_fields` in ``__post_init__``: the
type and finiteness through :func:`byzantium.typed.convert` / :func:`byzantium.typed.finite`, then
the bounds, each error naming ``<model>.<parameter>``, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, field
from typing import Any

from ..typed import ConfigError, convert, finite

__all__ = ["StragglerError", "bounded", "check_fields", "check_value", "check_int"]


class StragglerError(ValueError):
    """Bad parameter or input for a delay model, timing policy or server policy."""


def bounded(
    default: Any = MISSING, *, kind: type = float, gt: float | None = None, ge: float | None = None,
    le: float | None = None, note: str = "",
) -> Any:
    """A dataclass field of ``kind`` (float or int) with bounds ``> gt``, ``>= ge``, ``<= le``;
    ``note`` is appended to the bound in messages (e.g. ``" (a slowdown)"``)."""
    return field(default=default, metadata={"bounds": dict(kind=kind, gt=gt, ge=ge, le=le, note=note)})


def check_value(
    where: str, name: str, value: Any, *, kind: type = float, gt: float | None = None,
    ge: float | None = None, le: float | None = None, note: str = "",
) -> float | int:
    """``value`` checked to be a finite ``kind`` within the bounds (returned converted)."""
    path = f"{where}.{name}"
    try:
        v = convert(value, kind, path)
        if kind is float:
            finite(path, v)
    except ConfigError as e:
        raise StragglerError(str(e)) from None
    if ge is not None and le is not None:
        ok, rule = ge <= v <= le, f"in [{ge:g}, {le:g}]"
    elif gt is not None:
        ok, rule = v > gt, f"> {gt:g}"
    elif ge is not None:
        ok, rule = v >= ge, f">= {ge:g}"
    else:
        ok, rule = True, ""
    if not ok:
        raise StragglerError(f"{path}: must be {rule}{note}, got {value!r}")
    return v


def check_fields(obj: Any) -> None:
    """Check every :func:`bounded` field of the dataclass ``obj`` (errors name ``obj.name``)."""
    for f in dataclasses.fields(obj):
        bounds = f.metadata.get("bounds")
        if bounds is not None:
            check_value(obj.name, f.name, getattr(obj, f.name), **bounds)


def check_int(where: str, name: str, value: Any) -> int:
    """An argument that must be an integer (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise StragglerError(f"{where}: {name} must be an integer, got {name}={value!r}")
    return int(value)
