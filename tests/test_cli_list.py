"""``byzantium list``: every registry, each entry with its parameters."""

from __future__ import annotations

import pytest

from byzantium.cli import main


@pytest.mark.parametrize("what, expected", [
    ("models", ["cnn1d", "channels=25", "resnet18", "norm='group'"]),
    ("datasets", ["mnist1d", "test_size=1000", "logistic", "num_classes=2", "cifar10"]),
    ("stragglers", ["shifted_exponential", "mu=1.0", "slow_set", "workers (required)"]),
    ("schemes", ["byzshield", "dstar", "byzsgd"]),
])
def test_list_prints_every_entry_with_its_parameters(what, expected, capsys) -> None:
    assert main(["list", what]) == 0
    out = capsys.readouterr().out
    for frag in expected:
        assert frag in out, (frag, out)
