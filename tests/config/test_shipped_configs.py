"""Every configuration shipped in configs/ parses and builds its schemes."""

from __future__ import annotations

from pathlib import Path

import pytest

from byzantium.config import load_config
from byzantium.schemes import SchemeContext, build_scheme
from byzantium.runtime.byzsgd_sim import byzsgd_params

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_configs_exist() -> None:
    assert any(p.name == "demo.yaml" for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_parses_and_builds(path: Path) -> None:
    cfg = load_config(path)
    for sc in cfg.compare or [cfg.scheme]:
        q = sc.q if sc.q is not None else cfg.attack.q
        if sc.name == "byzsgd":
            assert byzsgd_params(cfg, q).n_w == cfg.workers
            continue
        scheme = build_scheme(sc.name, sc.display, sc.params,
                              SchemeContext(cfg.workers, q, cfg.stragglers.k))
        assert scheme.num_workers == cfg.workers
