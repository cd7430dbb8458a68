"""The systems, each a composition of an assignment, a decoder and an aggregator, registered by
name with its own params dataclass (:mod:`byzantium.schemes.registry`): one file per system,
found and imported automatically (adding a system is adding its file).

============  ===============================  ==========================================
file          schemes                          parts
============  ===============================  ==========================================
vanilla.py    vanilla, robust                  baseline assignment, no decoding, a rule
draco.py      draco_repetition, draco_cyclic   repetition vote / cyclic code, exact mean
detox.py      detox                            repetition groups, vote, robust rule
byzshield.py  byzshield                        MOLS / Ramanujan, vote per file, robust rule
dstar.py      dstar                            first k arrivals, ensemble-median filter
byzsgd.py     byzsgd                           replicated servers (params only)
============  ===============================  ==========================================
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import Scheme, StepInfo, StepView
from .cyclic import CyclicScheme
from .dstar import DStarScheme
from .registry import SCHEMES, SchemeContext, build_scheme
from .vote import VoteScheme

__all__ = [
    "Scheme",
    "StepInfo",
    "StepView",
    "VoteScheme",
    "CyclicScheme",
    "DStarScheme",
    "SCHEMES",
    "SchemeContext",
    "build_scheme",
    "describe_schemes",
]


# every module of this package registers its schemes on import: a new system is one new file
for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_mod}")


def describe_schemes() -> list[tuple[str, str]]:
    """``(name, summary)`` of every registered scheme, for ``byzantium list schemes``."""
    return [(name, e.summary) for name, e in SCHEMES.items()]
