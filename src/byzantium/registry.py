"""One registry helper for every kind of named part: schemes, aggregation rules, attacks,
models, datasets, straggler models, faults.

A :class:`Registry` maps a name to an entry (a function, a class, or a small record holding
one); ``@REG.register("name")`` adds the decorated object. Looking up an unknown name raises the
registry's error type with the allowed names, and a name registered twice is a programming
error. Each entry may carry a *params dataclass*: :meth:`Registry.params` turns a plain mapping
into it through :func:`byzantium.typed.from_mapping`, so its errors name the field, the value and
what is allowed, exactly like the run configuration's.

Adding a part is then one file: define it, decorate it, import the module in its package's
``__init__`` (or register it from a plug-in).
"""

from __future__ import annotations

from typing import Any, Callable, Generic, Iterator, TypeVar

from .typed import ConfigError, from_mapping

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one ``kind`` (e.g. ``"scheme"``), in registration order."""

    def __init__(self, kind: str, *, error: type[Exception] = ConfigError) -> None:
        self.kind = kind
        self.error = error
        self._entries: dict[str, T] = {}
        self._params: dict[str, type | None] = {}

    def add(self, name: str, entry: T, *, params: type | None = None) -> T:
        """Register ``entry`` under ``name`` (optionally with its params dataclass)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} registry: a name must be a non-empty string, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = entry
        self._params[name] = params
        return entry

    def register(self, name: str, *, params: type | None = None) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def deco(obj: T) -> T:
            return self.add(name, obj, params=params)

        return deco

    def remove(self, name: str) -> T:
        """Unregister ``name`` (a test's or a plug-in's temporary entry); returns the entry."""
        entry = self[name]
        del self._entries[name]
        del self._params[name]
        return entry

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise self.error(self.unknown(name)) from None

    def get(self, name: str, default: Any = None) -> Any:
        """The entry, or ``default`` when ``name`` is not registered (as ``dict.get``)."""
        return self._entries.get(name, default)

    def unknown(self, name: Any, path: str | None = None) -> str:
        """The message for an unknown ``name``: the value and the allowed names."""
        where = f"{path}: " if path else ""
        return (f"{where}unknown {self.kind} {name!r}; choose one of: "
                f"{', '.join(self._entries) or '(none registered)'}")

    def params_class(self, name: str) -> type | None:
        """The params dataclass of entry ``name`` (None: it takes no parameters)."""
        if name not in self._entries:
            raise self.error(self.unknown(name))
        return self._params[name]

    def params(self, name: str, raw: dict | None, path: str) -> Any:
        """The params dataclass of entry ``name`` built from ``raw`` (errors name ``path``)."""
        cls = self.params_class(name)
        if cls is None:
            if raw:
                raise ConfigError(
                    f"unknown field {path}.{next(iter(raw))}; {self.kind} {name!r} takes no parameters"
                )
            return None
        return from_mapping(cls, dict(raw or {}), path)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def values(self) -> list[T]:
        return list(self._entries.values())
