"""Plain data (parsed YAML, ``--set`` overrides, a registry entry's ``params:``) into typed
dataclasses, with errors that name the field (dotted path), the value and what is allowed.

:func:`from_mapping` is the one converter behind the run configuration
(:mod:`byzantium.config`) and every registry's params dataclass (:mod:`byzantium.registry`), so a
scheme's or an attack's own fields get the same error quality as the top-level config.

Hooks a dataclass may define:

* ``__shorthand__ = "name"``: a plain string ``"x"`` stands for the mapping ``{"name": "x"}``;
* ``__from_mapping__(raw, path)`` (classmethod): builds the object itself (e.g. a scheme
  config whose extra keys are validated by the scheme's own params dataclass);
* ``__to_plain__()``: the plain form :func:`to_plain` writes (and :func:`from_mapping` reads back).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

__all__ = ["ConfigError", "from_mapping", "convert", "to_plain", "field_names"]


class ConfigError(ValueError):
    """A configuration value is missing, malformed or not allowed."""


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of: " + ", ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    if tp is typing.Any:
        return "any value"
    return getattr(tp, "__name__", str(tp))


def convert(value: Any, tp: Any, path: str) -> Any:
    """``value`` checked against (and converted to) the annotation ``tp``; ``path`` names it."""
    origin = get_origin(tp)
    if tp is typing.Any:
        return value
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(
                f"{path}: {value!r} is not allowed; choose one of: "
                + ", ".join(str(a) for a in allowed)
            )
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{path}: a value is required ({_type_name(tp)}), got null")
        for a in args:
            if a is type(None):
                continue
            try:
                return convert(value, a, path)
            except ConfigError:
                pass
        raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        (item,) = get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return [convert(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        shorthand = getattr(tp, "__shorthand__", None)
        if isinstance(value, str) and shorthand:
            value = {shorthand: value}
        if dataclasses.is_dataclass(value) and isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return from_mapping(tp, value, path)
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {path}")


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def from_mapping(cls: type, raw: dict, path: str = "") -> Any:
    """Build dataclass ``cls`` from the mapping ``raw``: unknown keys, wrong types and values
    outside a ``Literal`` raise :class:`ConfigError` naming ``path.field``; missing keys take the
    field's default. A ``__post_init__`` that raises ``ConfigError`` sees its message prefixed
    with ``path`` (when it does not already name it)."""
    hook = getattr(cls, "__from_mapping__", None)
    if hook is not None:
        return hook(raw, path)
    hints = typing.get_type_hints(cls)
    names = field_names(cls)
    unknown = [k for k in raw if k not in names]
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(
            f"unknown field {where}{unknown[0]}; allowed fields"
            f"{' of ' + path if path else ''}: {', '.join(names) or '(none)'}"
        )
    kwargs = {}
    for name in names:
        if name in raw:
            kwargs[name] = convert(raw[name], hints[name], f"{path}.{name}" if path else name)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        msg = str(e)
        if path and not msg.startswith(path):
            msg = f"{path}.{msg}"
        raise ConfigError(msg) from None


def to_plain(obj: Any) -> Any:
    """A dataclass tree as plain dicts/lists (what ``config.yaml`` holds); honours
    ``__to_plain__``."""
    hook = getattr(obj, "__to_plain__", None)
    if hook is not None and dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return hook()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj


def finite(path: str, value: float) -> float:
    """``value`` unless it is NaN or infinite (then :class:`ConfigError` naming ``path``)."""
    if not math.isfinite(value):
        raise ConfigError(f"{path}: must be a finite number, got {value!r}")
    return value
