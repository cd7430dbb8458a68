"""The golden cases: which config file, which ``--set`` overrides, and their short-run settings.

The cases come from the config files themselves (the redesign keeps them): every entry of
``configs/demo.yaml``'s ``compare:`` list under that config's attack (ALIE, q = 3, worst-case
placement), and the ``scheme:`` of ``configs/byzsgd.yaml`` (ByzSGD async) and
``configs/byzsgd_sync.yaml`` (ByzSGD sync). K, the schemes, data, model and attack stay as in the
configs; only the run is short (``STEPS`` steps, one evaluation at the end) and a checkpoint is
written at the end (the final model is read from it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
STEPS = 60
"""Steps per run: long enough that every scheme's aggregation, vote and attack run many times
(ByzSGD: several gathers), short enough for the whole table in about a minute."""

SHORT_RUN = (f"training.steps={STEPS}", f"training.eval_every={STEPS}",
             f"training.checkpoint_every={STEPS}")


@dataclass(frozen=True)
class Case:
    """One golden run: ``config`` (path relative to the repository) with ``overrides`` (``--set``
    strings, applied after :data:`SHORT_RUN`)."""

    name: str
    label: str
    config: str
    overrides: tuple[str, ...] = ()

    def settings(self) -> list[str]:
        """All ``--set`` overrides of this case, in order."""
        return [*SHORT_RUN, *self.overrides]

    def config_path(self) -> Path:
        return REPO / self.config


def _scheme_overrides(entry: dict) -> tuple[str, ...]:
    """``--set scheme.<key>=<value>`` for each field of a ``compare:`` entry (label aside: it
    changes no number)."""
    out = []
    for key, value in entry.items():
        if key == "label":
            continue
        if isinstance(value, (dict, list)):
            raise ValueError(f"compare entry {entry}: field {key!r} is a {type(value).__name__}; "
                             "only scalar fields can be passed as --set overrides")
        out.append(f"scheme.{key}={value}")
    return tuple(out)


def golden_cases() -> list[Case]:
    """The demo's compare entries, then ByzSGD async and sync (names unique)."""
    demo = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    cases = [
        Case(f"demo.{e['name']}", e.get("label", e["name"]), "configs/demo.yaml", _scheme_overrides(e))
        for e in demo["compare"]
    ]
    for name, path in (("byzsgd.async", "configs/byzsgd.yaml"), ("byzsgd.sync", "configs/byzsgd_sync.yaml")):
        scheme = yaml.safe_load((REPO / path).read_text())["scheme"]
        cases.append(Case(name, scheme.get("label", scheme["name"]), path))
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise ValueError(f"golden case names must be unique, got {names}")
    return cases
