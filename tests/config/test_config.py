"""Config validation: every error names the field, the value and what is allowed."""

from __future__ import annotations

import pytest
import yaml

from byzantium.config import (
    ConfigError,
    RunConfig,
    SchemeConfig,
    apply_overrides,
    load_config,
    parse_config,
    to_dict,
)


def test_defaults_are_valid() -> None:
    cfg = parse_config({})
    assert isinstance(cfg, RunConfig)
    assert cfg.workers == 15 and cfg.scheme.name == "vanilla" and cfg.attack.q == 0


def test_nested_values_and_scheme_shorthand() -> None:
    cfg = parse_config(
        {
            "workers": 9,
            "scheme": "byzshield",
            "attack": {"name": "alie", "q": 2, "params": {"z": 1.0}},
            "compare": ["vanilla", {"name": "robust", "aggregator": "median", "label": "median"}],
        }
    )
    assert cfg.scheme == SchemeConfig(name="byzshield")
    assert cfg.attack.params == {"z": 1.0}
    assert [s.display for s in cfg.compare] == ["vanilla", "median"]


@pytest.mark.parametrize(
    "raw, fragments",
    [
        ({"scheme": {"name": "byzshild"}}, ["scheme.name", "'byzshild'", "byzshield"]),
        ({"attack": {"nmae": "alie"}}, ["attack.nmae", "allowed fields", "name"]),
        ({"training": {"steps": "ten"}}, ["training.steps", "integer", "'ten'"]),
        ({"training": {"steps": 0}}, ["training.steps", "> 0", "0"]),
        ({"optim": {"momentum": 1.5}}, ["optim.momentum", "[0, 1)", "1.5"]),
        ({"optim": {"lr": -1}}, ["optim.lr", "> 0"]),
        ({"data": {"split": "random"}}, ["data.split", "'random'", "iid", "dirichlet"]),
        ({"data": {"name": "imagenet"}}, ["data.name", "'imagenet'", "mnist1d"]),
        ({"model": {"name": "vgg"}}, ["model.name", "'vgg'", "cnn1d", "resnet18"]),
        ({"stragglers": {"model": "weibull"}}, ["stragglers.model", "'weibull'", "pareto", "slow_set"]),
        ({"attack": {"name": "alie", "q": 15}}, ["attack.q", "15", "workers"]),
        ({"attack": {"q": 2}}, ["attack.name", "q > 0"]),
        ({"attack": {"name": "alie", "placement": "worst"}}, ["attack.placement", "worst_case"]),
        ({"stragglers": {"policy": "first_k"}}, ["stragglers.k", "required"]),
        ({"stragglers": {"policy": "first_k", "k": 99}}, ["stragglers.k", "99"]),
        ({"scheme": {"name": "robust", "f": "many"}}, ["scheme.f", "'many'", "auto"]),
        ({"scheme": {"name": "detox", "f": -1}}, ["scheme.f", ">= 0"]),
        ({"scheme": {"name": "dstar", "lam": 0.5}}, ["scheme.lam", ">= 1"]),
        ({"scheme": {"lam": 2.0}}, ["unknown field scheme.lam", "scheme 'vanilla'", "label"]),
        ({"compare": [{"name": "detox", "assignment": "mols"}]},
         ["unknown field compare[0].assignment", "scheme 'detox'", "aggregator"]),
        ({"scheme": {"name": "byzshield", "assignment": "expander"}},
         ["scheme.assignment", "'expander'", "mols", "ramanujan"]),
        ({"compare": [{"name": "vanilla"}, {"name": "nope"}]}, ["compare[1].name", "'nope'"]),
        ({"compare": "vanilla"}, ["compare", "list"]),
        ({"seed": 1.5}, ["seed", "integer", "1.5"]),
        ({"compare_clean": "yes"}, ["compare_clean", "true or false"]),
        ([1, 2], ["top level", "mapping"]),
    ],
)
def test_errors_name_field_value_and_allowed(raw, fragments) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(raw)
    for frag in fragments:
        assert frag in str(e.value), (frag, str(e.value))


def test_overrides_set_nested_fields_and_list_items() -> None:
    raw = {"scheme": "byzshield", "compare": [{"name": "vanilla"}, {"name": "robust"}]}
    out = apply_overrides(
        raw,
        ["scheme.q=3", "attack.name=alie", "attack.q=2", "compare.1.aggregator=krum", "optim.lr=0.1"],
    )
    cfg = parse_config(out)
    assert cfg.scheme.name == "byzshield" and cfg.scheme.q == 3
    assert cfg.attack.q == 2 and cfg.compare[1].aggregator == "krum" and cfg.optim.lr == 0.1
    assert raw == {"scheme": "byzshield", "compare": [{"name": "vanilla"}, {"name": "robust"}]}


@pytest.mark.parametrize("bad", ["attack.q", "=3", "compare.5.name=x"])
def test_bad_overrides(bad) -> None:
    with pytest.raises(ConfigError):
        apply_overrides({"compare": [{"name": "vanilla"}]}, [bad])


def test_load_config_file_and_roundtrip(tmp_path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("name: t\nworkers: 9\nscheme: {name: detox, r: 3}\n")
    cfg = load_config(p, ["training.steps=7"])
    assert cfg.name == "t" and cfg.training.steps == 7 and cfg.scheme.r == 3
    again = parse_config(yaml.safe_load(yaml.safe_dump(to_dict(cfg))))
    assert again == cfg


def test_load_config_missing_and_malformed(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_yaml_numbers_as_people_write_them(tmp_path) -> None:
    """``1e-4`` is a float in config files and in ``--set`` (YAML 1.1 would read a string);
    quoted text stays text."""
    p = tmp_path / "c.yaml"
    p.write_text("optim: {lr: 5e-2, weight_decay: 1e-4}\nattack: {name: constant, q: 1, "
                 "params: {c: 1.0e30}}\nname: '1e-4'\n")
    cfg = load_config(p, ["optim.gamma=2E-1", "training.steps=1_000"])
    assert cfg.optim.lr == 0.05 and cfg.optim.weight_decay == 1e-4 and cfg.optim.gamma == 0.2
    assert cfg.attack.params == {"c": 1e30} and cfg.name == "1e-4" and cfg.training.steps == 1000


@pytest.mark.parametrize("raw, fragment", [
    ({"optim": {"lr": float("nan")}}, "optim.lr: must be a finite number, got nan"),
    ({"optim": {"lr": float("inf")}}, "optim.lr: must be a finite number, got inf"),
    ({"optim": {"weight_decay": float("nan")}}, "optim.weight_decay: must be a finite number"),
    ({"optim": {"gamma": float("inf")}}, "optim.gamma: must be a finite number"),
    ({"optim": {"momentum": float("nan")}}, "optim.momentum: must be in [0, 1)"),
    ({"training": {"threads": 100000}}, "training.threads: at most 4 x the"),
])
def test_non_finite_numbers_and_thread_bombs_are_refused(raw, fragment) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(raw)
    assert fragment in str(e.value)
