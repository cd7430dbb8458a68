"""The one registry helper every kind of part uses: names, errors, params dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from byzantium.registry import Registry
from byzantium.typed import ConfigError


@dataclass
class _Params:
    width: int = 3
    mode: Literal["a", "b"] = "a"

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ConfigError(f"width: must be >= 1, got {self.width}")


def test_register_lookup_and_errors() -> None:
    reg: Registry = Registry("widget")

    @reg.register("square", params=_Params)
    def square(x: int) -> int:
        return x * x

    reg.add("plain", len)
    assert reg["square"] is square and "plain" in reg and reg.names() == ["square", "plain"]
    assert reg.get("missing") is None and len(reg) == 2
    with pytest.raises(ConfigError, match=r"unknown widget 'cube'; choose one of: square, plain"):
        reg["cube"]
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("square", square)
    assert reg.remove("plain") is len and "plain" not in reg


def test_params_errors_name_path_field_value_and_allowed() -> None:
    reg: Registry = Registry("widget")
    reg.add("square", object(), params=_Params)
    reg.add("bare", object())
    assert reg.params("square", {"width": 5}, "scheme") == _Params(width=5)
    assert reg.params("square", None, "scheme") == _Params()
    for raw, fragments in [
        ({"width": "x"}, ["scheme.width", "integer", "'x'"]),
        ({"mode": "c"}, ["scheme.mode", "'c'", "a, b"]),
        ({"colour": 1}, ["unknown field scheme.colour", "width, mode"]),
        ({"width": 0}, ["scheme.width", ">= 1", "0"]),
    ]:
        with pytest.raises(ConfigError) as e:
            reg.params("square", raw, "scheme")
        for frag in fragments:
            assert frag in str(e.value), (frag, str(e.value))
    with pytest.raises(ConfigError, match="unknown field p.k; widget 'bare' takes no parameters"):
        reg.params("bare", {"k": 1}, "p")
    assert reg.params("bare", {}, "p") is None


def test_every_scheme_is_registered_with_its_params() -> None:
    from byzantium.schemes import SCHEMES

    assert sorted(SCHEMES.names()) == ["byzsgd", "byzshield", "detox", "draco_cyclic",
                                       "draco_repetition", "dstar", "robust", "vanilla"]
    for name in SCHEMES:
        assert SCHEMES.params_class(name) is not None
