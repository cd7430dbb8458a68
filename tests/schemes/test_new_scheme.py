"""Adding a scheme is one file: a params dataclass and a registered builder; the config, the
simulator and the run directory need no change."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from byzantium.assignments import baseline
from byzantium.config import ConfigError, parse_config
from byzantium.runtime.run import run_training
from byzantium.schemes import SCHEMES, VoteScheme
from byzantium.schemes.registry import SchemeContext, scheme
from byzantium.typed import ConfigError as TypedConfigError


@dataclass
class _TrimmedParams:
    trim: int = 1

    def __post_init__(self) -> None:
        if self.trim < 0:
            raise TypedConfigError(f"trim: must be >= 0, got {self.trim}")


@pytest.fixture
def trimmed_scheme():
    @scheme("test_trimmed", params=_TrimmedParams, summary="baseline, trimmed mean")
    def build(label: str, p: _TrimmedParams, ctx: SchemeContext) -> VoteScheme:
        return VoteScheme(label, baseline(ctx.workers), q=ctx.q, aggregator="trimmed_mean",
                          f=p.trim)

    yield
    SCHEMES.remove("test_trimmed")


def test_a_scheme_registered_elsewhere_runs_from_a_config(trimmed_scheme, tmp_path) -> None:
    raw = {
        "workers": 7, "seed": 0,
        "data": {"name": "logistic", "train_size": 600, "validation_size": 60,
                 "params": {"dim": 10, "num_classes": 3}},
        "model": {"name": "logreg"},
        "training": {"steps": 3, "batch_size": 70, "eval_every": 3, "eval_batch_size": 200},
        "attack": {"name": "reversed", "q": 1},
        "scheme": {"name": "test_trimmed", "trim": 2},
    }
    cfg = parse_config(raw)
    assert cfg.scheme.trim == 2
    summary = run_training(cfg, tmp_path / "run", progress=False)
    assert summary["completed"] and summary["aggregator"] == "trimmed_mean"
    assert summary["aggregator_f"] == 2 and summary["q"] == 1
    with pytest.raises(ConfigError, match=r"scheme.trim: must be >= 0, got -1"):
        parse_config({**raw, "scheme": {"name": "test_trimmed", "trim": -1}})
    with pytest.raises(ConfigError, match=r"unknown field scheme.aggregator; .*trim"):
        parse_config({**raw, "scheme": {"name": "test_trimmed", "aggregator": "median"}})
