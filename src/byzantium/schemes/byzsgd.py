"""ByzSGD (El-Mhamdi et al., PODC 2020): replicated parameter servers, some Byzantine; no single
server step. Its entry holds the per-entry overrides of the run's ``byzsgd:`` section; the
replicated servers run in :mod:`byzantium.byzsgd` (simulator) and the mesh runtime."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..typed import ConfigError
from .registry import SchemeContext, scheme

__all__ = ["ByzSGDParams"]


@dataclass
class ByzSGDParams:
    byzsgd: dict = field(default_factory=dict)
    """Overrides of the run's ``byzsgd:`` section for this entry, e.g.
    ``{server_rule: mean, model_rule: mean, dmc: false}`` puts the vanilla replicated baseline in
    a ``compare`` list next to ByzSGD."""


@scheme("byzsgd", params=ByzSGDParams,
        summary="n_ps replicated servers (f_ps Byzantine): MDA at servers, CwMed at workers, DMC",
        topology="replicated")
def build_byzsgd(label: str, p: ByzSGDParams, ctx: SchemeContext) -> Any:
    raise ConfigError(
        f"scheme {label!r}: ByzSGD has no single server; it runs on replicated servers "
        "(byzantium train/compare/launch dispatch to them)"
    )
