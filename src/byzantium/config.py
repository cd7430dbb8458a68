"""Typed, validated run configuration: YAML in, dataclasses out, clear errors.

Every error names the field (dotted path), the value given and what is allowed, e.g.
``scheme.name: 'byzshild' is not allowed; choose one of: byzshield, detox, ...``.
Command-line overrides use the same dotted paths: ``--set attack.q=3 --set training.steps=50``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from .registry import Registry
from .stragglers import DELAY_MODELS
from .schemes.registry import SCHEMES as SCHEME_REGISTRY
from .training.datasets import DATASETS
from .training.models import MODELS
from .typed import ConfigError, convert, field_names, from_mapping, to_plain

__all__ = [
    "byzsgd_section",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainingConfig",
    "AttackConfig",
    "StragglerConfig",
    "SchemeConfig",
    "ByzSGDConfig",
    "RunConfig",
    "load_config",
    "parse_config",
    "apply_overrides",
    "to_dict",
    "SCHEMES",
]


SCHEMES = tuple(SCHEME_REGISTRY.names())
"""Registered scheme names (importing :mod:`byzantium.schemes` registers them all)."""


def _registered(field_name: str, value: str, registry: Registry) -> None:
    """A name field that must be registered in ``registry`` (the message a ``Literal`` gives)."""
    if value not in registry:
        raise ConfigError(
            f"{field_name}: {value!r} is not allowed; choose one of: {', '.join(registry.names())}"
        )


@dataclass
class DataConfig:
    """Which data set, how much of it, and how a step's batch is split into files."""

    name: str = "mnist1d"
    """A registered data set (:mod:`byzantium.training.datasets`); ``params`` are its fields."""
    train_size: int | None = 4000
    root: str | None = None
    split: Literal["iid", "dirichlet"] = "iid"
    alpha: float = 0.5
    validation_size: int = 200
    params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        _registered("name", self.name, DATASETS)


@dataclass
class ModelConfig:
    name: str = "cnn1d"
    """A registered model (:func:`byzantium.training.models.build_model`)."""
    params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        _registered("name", self.name, MODELS)


@dataclass
class OptimConfig:
    """SGD with heavy-ball momentum and weight decay, and a learning-rate schedule."""

    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: Literal["constant", "step", "cosine"] = "constant"
    step_size: int = 100
    gamma: float = 0.5


@dataclass
class TrainingConfig:
    steps: int = 300
    batch_size: int = 300
    eval_every: int = 25
    eval_batch_size: int = 1000
    checkpoint_every: int = 0
    threads: int = 0
    """torch intra-op threads for the run (0: leave torch's default). Small models on a few
    cores run faster with 1: per-operation thread hand-offs cost more than the work."""


@dataclass
class AttackConfig:
    """Who is Byzantine and what they send.

    ``q`` Byzantine workers, placed ``worst_case`` (the omniscient choice that distorts the most
    files for the scheme's assignment), ``random`` (one fixed random set) or ``redraw`` (a fresh
    random set every step).
    """

    name: str = "none"
    q: int = 0
    placement: Literal["worst_case", "random", "redraw"] = "worst_case"
    timing: Literal["rushing", "like_honest", "slowest"] = "rushing"
    params: dict = field(default_factory=dict)


@dataclass
class StragglerConfig:
    """Per-worker delay model (simulated seconds) and the server's arrival policy."""

    model: str = "none"
    """A registered delay model (:mod:`byzantium.runtime.stragglers`); ``params`` are its fields."""
    params: dict = field(default_factory=dict)
    policy: Literal["wait_all", "first_k"] = "wait_all"
    k: int | None = None

    def __post_init__(self) -> None:
        _registered("model", self.model, DELAY_MODELS)


@dataclass
class SchemeConfig:
    """One system: a registered scheme ``name`` (``byzantium list schemes``), a display
    ``label``, an optional ``q`` overriding ``attack.q`` for this scheme only
    (``--set scheme.q=3``), and the scheme's own fields in ``params`` (its params dataclass, see
    :mod:`byzantium.schemes`; e.g. ``r`` and ``aggregator`` for DETOX).

    In YAML the scheme's fields sit beside ``name`` (``{name: detox, r: 3, aggregator: median}``)
    and a plain string is a name; ``cfg.scheme.r`` reads a param.
    """

    __shorthand__: ClassVar[str] = "name"
    _COMMON: ClassVar[tuple[str, ...]] = ("name", "label", "q")

    name: str = "vanilla"
    label: str | None = None
    q: int | None = None
    params: Any = None

    def __post_init__(self) -> None:
        if self.name not in SCHEME_REGISTRY:
            raise ConfigError(
                f"name: {self.name!r} is not allowed; choose one of: {', '.join(SCHEME_REGISTRY.names())}"
            )
        if self.params is None:
            self.params = SCHEME_REGISTRY.params(self.name, {}, "scheme")

    @classmethod
    def __from_mapping__(cls, raw: dict, path: str) -> "SchemeConfig":
        raw = dict(raw)
        name = raw.pop("name", "vanilla")
        if not isinstance(name, str) or name not in SCHEME_REGISTRY:
            raise ConfigError(
                f"{path}.name: {name!r} is not allowed; choose one of: {', '.join(SCHEME_REGISTRY.names())}"
            )
        label = convert(raw.pop("label", None), str | None, f"{path}.label")
        q = convert(raw.pop("q", None), int | None, f"{path}.q")
        pcls = SCHEME_REGISTRY.params_class(name)
        allowed = [*cls._COMMON, *(field_names(pcls) if pcls else [])]
        unknown = [k for k in raw if k not in allowed]
        if unknown:
            raise ConfigError(
                f"unknown field {path}.{unknown[0]}; allowed fields of {path} (scheme "
                f"{name!r}): {', '.join(allowed)}"
            )
        return cls(name=name, label=label, q=q, params=SCHEME_REGISTRY.params(name, raw, path))

    def __to_plain__(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "q": self.q, **to_plain(self.params)}

    def __getattr__(self, item: str) -> Any:
        if item.startswith("_") or item in ("params", "name", "label", "q"):
            raise AttributeError(item)
        params = self.__dict__.get("params")
        if params is not None and hasattr(params, item):
            return getattr(params, item)
        raise AttributeError(
            f"scheme {self.__dict__.get('name')!r} has no field {item!r}"
        )

    @property
    def display(self) -> str:
        return self.label or self.name


@dataclass
class ByzSGDConfig:
    """ByzSGD's replicated servers (used when ``scheme.name`` is ``byzsgd``).

    ``n_ps`` servers of which ``f_ps`` may be Byzantine (they run ``server_attack`` when the run's
    attack is enabled); the workers are the run's ``workers``, ``f_w`` = the attack's ``q``.
    ``server_rule``/``model_rule``/``dmc`` = ``mean``/``mean``/``false`` gives the vanilla
    replicated baseline.
    """

    n_ps: int = 5
    f_ps: int = 1
    variant: Literal["async", "sync"] = "async"
    gather_period: int | str = "auto"
    lipschitz: float = 1.0
    q_ps: int | None = None
    q_w: int | None = None
    relaxed: bool = False
    outliers_norm: Literal["previous", "pulled"] = "previous"
    scheduler: Literal["adversarial", "random", "first"] = "adversarial"
    server_attack: str = "none"
    server_attack_params: dict = field(default_factory=dict)
    server_rule: str = "mda"
    model_rule: Literal["median", "mean"] = "median"
    dmc: bool = True


@dataclass
class RunConfig:
    name: str = "run"
    seed: int = 0
    workers: int = 15
    out_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    stragglers: StragglerConfig = field(default_factory=StragglerConfig)
    scheme: SchemeConfig = field(default_factory=SchemeConfig)
    compare: list[SchemeConfig] = field(default_factory=list)
    compare_clean: bool = True
    byzsgd: ByzSGDConfig = field(default_factory=ByzSGDConfig)


# --------------------------------------------------------------------------------------------
# semantic checks (beyond types)


def _positive(path: str, value: float | int | None, *, allow_zero: bool = False) -> None:
    """``value`` must be a finite number > 0 (``>= 0`` with ``allow_zero``); NaN and Inf are
    refused by name (``nan < 0`` is False, so a plain comparison lets them through)."""
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{path}: must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        rel = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{path}: must be {rel}, got {value!r}")


MAX_THREADS_PER_CORE = 4
"""``training.threads`` may be at most this many times the machine's cores: more only adds
hand-off costs, and a huge value exhausts the machine's threads (other processes then fail)."""


class _Loader(yaml.SafeLoader):
    """YAML as people write numbers: ``1e-4``, ``3E+2`` and ``.5e3`` are floats (PyYAML follows
    YAML 1.1, where a float needs a dot and a signed exponent, so ``1e-4`` would be a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    """Parse YAML text with :class:`_Loader` (numbers in scientific notation are floats)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _validate(cfg: RunConfig) -> RunConfig:
    _positive("workers", cfg.workers)
    _positive("training.steps", cfg.training.steps)
    _positive("training.batch_size", cfg.training.batch_size)
    _positive("training.eval_every", cfg.training.eval_every)
    _positive("training.eval_batch_size", cfg.training.eval_batch_size)
    _positive("training.checkpoint_every", cfg.training.checkpoint_every, allow_zero=True)
    _positive("training.threads", cfg.training.threads, allow_zero=True)
    cores = os.cpu_count() or 1
    if cfg.training.threads > MAX_THREADS_PER_CORE * cores:
        raise ConfigError(
            f"training.threads: at most {MAX_THREADS_PER_CORE} x the {cores} cores of this "
            f"machine ({MAX_THREADS_PER_CORE * cores}), got {cfg.training.threads}"
        )
    _positive("optim.lr", cfg.optim.lr)
    _positive("optim.weight_decay", cfg.optim.weight_decay, allow_zero=True)
    if not 0 <= cfg.optim.momentum < 1:
        raise ConfigError(f"optim.momentum: must be in [0, 1), got {cfg.optim.momentum!r}")
    _positive("optim.step_size", cfg.optim.step_size)
    _positive("optim.gamma", cfg.optim.gamma)
    _positive("data.train_size", cfg.data.train_size)
    _positive("data.alpha", cfg.data.alpha)
    _positive("data.validation_size", cfg.data.validation_size, allow_zero=True)
    _positive("attack.q", cfg.attack.q, allow_zero=True)
    if cfg.attack.q >= cfg.workers:
        raise ConfigError(
            f"attack.q: must be smaller than the number of workers ({cfg.workers}), got {cfg.attack.q}"
        )
    if cfg.attack.q > 0 and cfg.attack.name == "none":
        raise ConfigError("attack.name: q > 0 Byzantine workers need an attack; got 'none'")
    if cfg.stragglers.policy == "first_k":
        if cfg.stragglers.k is None:
            raise ConfigError("stragglers.k: required when stragglers.policy is 'first_k'")
        if not 1 <= cfg.stragglers.k <= cfg.workers:
            raise ConfigError(
                f"stragglers.k: must be in [1, workers={cfg.workers}], got {cfg.stragglers.k}"
            )
    for i, sc in enumerate([cfg.scheme, *cfg.compare]):
        path = "scheme" if i == 0 else f"compare[{i - 1}]"
        if sc.q is not None and not 0 <= sc.q < cfg.workers:
            raise ConfigError(f"{path}.q: must be in [0, workers={cfg.workers}), got {sc.q}")
        _check_byzsgd(byzsgd_section(cfg, sc, path), f"{path}.byzsgd" if _overrides(sc) else "byzsgd")
    if _overrides(cfg.scheme):  # the run's own scheme: its overrides are the section
        cfg.byzsgd = byzsgd_section(cfg, cfg.scheme)
    _check_byzsgd(cfg.byzsgd, "byzsgd")
    return cfg


def _check_byzsgd(b: ByzSGDConfig, path: str) -> None:
    g = b.gather_period
    if isinstance(g, str) and g != "auto" or isinstance(g, int) and g < 1:
        raise ConfigError(f"{path}.gather_period: expected an integer >= 1 or 'auto', got {g!r}")


def _overrides(scheme: SchemeConfig) -> dict:
    """A ByzSGD entry's overrides of the ``byzsgd:`` section ({} for other schemes)."""
    return scheme.params.byzsgd if scheme.name == "byzsgd" else {}


def byzsgd_section(cfg: RunConfig, scheme: SchemeConfig, path: str = "scheme") -> ByzSGDConfig:
    """The ``byzsgd:`` section with ``scheme.byzsgd``'s overrides applied (errors name
    ``path.byzsgd.<field>``)."""
    if not _overrides(scheme):
        return cfg.byzsgd
    return from_mapping(ByzSGDConfig, {**dataclasses.asdict(cfg.byzsgd), **_overrides(scheme)}, f"{path}.byzsgd")


# --------------------------------------------------------------------------------------------
# public API


def parse_config(raw: dict | None) -> RunConfig:
    """Validate a plain dict (e.g. parsed YAML) into a :class:`RunConfig`."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a mapping at the top level, got {type(raw).__name__}")
    return _validate(from_mapping(RunConfig, raw, ""))


def _parse_value(text: str) -> Any:
    try:
        return yaml_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``key.path=value`` overrides (values parsed as YAML scalars) to a raw config dict.

    List items are addressed by index: ``compare.1.aggregator=krum``.
    """
    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. attack.q=3")
        key, _, text = item.partition("=")
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"--set {item!r}: empty key")
        node: Any = raw
        for j, p in enumerate(parts[:-1]):
            nxt_is_index = parts[j + 1].isdigit()
            if isinstance(node, list):
                if not p.isdigit() or int(p) >= len(node):
                    raise ConfigError(f"--set {key}: {p!r} is not a valid index (list of {len(node)})")
                node = node[int(p)]
            else:
                if p not in node or node[p] is None:
                    node[p] = [] if nxt_is_index else {}
                elif isinstance(node[p], str) and not nxt_is_index:
                    node[p] = {"name": node[p]}
                node = node[p]
        last = parts[-1]
        value = _parse_value(text)
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ConfigError(f"--set {key}: {last!r} is not a valid index (list of {len(node)})")
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"--set {key}: cannot set a field inside {node!r}")
    return raw


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML file, apply ``--set`` overrides and validate."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        raw = yaml_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    if overrides:
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: expected a mapping at the top level")
        raw = apply_overrides(raw, overrides)
    return parse_config(raw)


def to_dict(cfg: Any) -> Any:
    """The config as plain data (for the resolved ``config.yaml`` of a run directory)."""
    return to_plain(cfg)
