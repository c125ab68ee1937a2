"""Typed, validated trial configuration, and the one place a Ray Tune config dict becomes one.

A trial config is a nested dict with five sections (this is what Ray Tune sees and stores)::

    {"data": {...DataConfig fields...},
     "model": {"arch": "wrn", <keyword arguments of the registered builder>},
     "train": {...TrainConfig fields...},
     "method": {"name": "pgd_at", <method options>},   # training method (tune_robust.training)
     "attack": {"name": "pgd", <attack fields>},       # used by the training method
     "eval_attack": {"name": "pgd", <attack fields>},  # per-epoch validation (best-epoch selection)
     "eval": {...EvalConfig fields...},                # the final test evaluation suite
     "upstream": {<artifact name>: <path>}}           # filled by the runner for multi-stage sweeps

Flat dotted keys (``train.epochs``, ``model.depths``) address single values for ``--set`` and are the
Parquet column names. Values given as strings (from the command line) are parsed by the field's type;
``8/255`` is accepted wherever a float is.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin

from tune_robust.errors import ConfigError

SECTIONS = ("data", "model", "train", "method", "attack", "eval_attack", "eval", "upstream")


# ---------------------------------------------------------------------------------------------------
# Value coercion by type annotation


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is tuple:
        args = get_args(tp)
        inner = _type_name(args[0])
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {inner} (e.g. 1,2,3)"
        return f"{len(args)} comma-separated {inner} values"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp) if a is not type(None)) + " (or none)"
    return getattr(tp, "__name__", str(tp))


def _parse_float(text: str) -> float:
    if "/" in text:
        num, den = text.split("/", 1)
        return float(num) / float(den)
    return float(text)


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` converted to annotation ``tp``, or raise a ConfigError naming ``key``."""
    origin = get_origin(tp)
    bad = ConfigError(f"{key} expects {_type_name(tp)}, got {value!r}")
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        is_none = value is None or (isinstance(value, str) and value.lower() in ("none", "null", ""))
        if is_none and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except ConfigError:
                continue
        raise bad
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise bad
    if origin is tuple:
        args = get_args(tp)
        if isinstance(value, str):
            value = [v for v in value.strip().strip("[]()").replace(" ", "").split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise bad
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise bad
        return tuple(coerce(v, a, key) for v, a in zip(value, args, strict=True))
    if origin in (dict, Mapping) or tp is dict:
        if isinstance(value, Mapping):
            return dict(value)
        raise bad
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise bad
    if tp is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return _parse_float(value)
            except (ValueError, ZeroDivisionError):
                raise bad from None
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    if tp is Any:
        return value
    raise ConfigError(f"{key}: unsupported annotation {tp!r}")


def _hints(obj: Callable[..., Any]) -> dict[str, Any]:
    target = obj.__init__ if inspect.isclass(obj) and not dataclasses.is_dataclass(obj) else obj
    return typing.get_type_hints(target)


def builder_params(builder: Callable[..., Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Keyword parameters of a builder or dataclass with their annotations (and defaults)."""
    hints = _hints(builder)
    params = {}
    for name, p in inspect.signature(builder).parameters.items():
        if name in skip or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        params[name] = hints.get(name, Any)
    return params


def coerce_kwargs(
    builder: Callable[..., Any], kwargs: Mapping[str, Any], where: str, skip: tuple[str, ...] = ()
) -> dict[str, Any]:
    params = builder_params(builder, skip)
    out = {}
    for k, v in kwargs.items():
        if k not in params:
            raise ConfigError(f"{where}: unknown option {k!r}; valid options: {', '.join(sorted(params))}")
        out[k] = coerce(v, params[k], f"{where} option {k!r}")
    return out


# ---------------------------------------------------------------------------------------------------
# Sections


@dataclass(frozen=True)
class DataConfig:
    """Which data a trial sees and how it is split."""

    dataset: str = "digits"
    # Folder with the official files; None for the embedded digits set.
    data_dir: str | None = None
    # Fetch official files (with checksum) into data_dir if they are missing.
    download: bool = False
    # Share of the training set held out for best-checkpoint selection (or the NAS architecture half).
    val_fraction: float = 0.1
    # Seed of the train/validation split: fixed across trials so every config sees the same split.
    split_seed: int = 0
    # Keep only the first N training / test examples (0 = all): for quick proxies and tests.
    train_limit: int = 0
    test_limit: int = 0
    # "auto" uses the dataset's standard augmentation (crop+flip for CIFAR/SVHN, none for digits).
    augment: Literal["auto", "none", "crop_flip"] = "auto"

    def __post_init__(self) -> None:
        from tune_robust.data import DATASETS

        DATASETS.get(self.dataset)
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.train_limit < 0 or self.test_limit < 0:
            raise ConfigError("data.train_limit and data.test_limit must be >= 0 (0 = all)")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one trial; defaults follow Huang et al. (SAT on CIFAR-10)."""

    # Epoch budget (Free runs epochs / replays passes over the data).
    epochs: int = 100
    batch_size: int = 128
    # "adam" (Madry et al.'s and Wong et al.'s MNIST setting) ignores momentum and nesterov.
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    # Leave BatchNorm/LayerNorm weights and all biases (parameters with one dimension) out of weight
    # decay. Off by default: Huang et al.'s, TRADES' and MART's code decay every parameter; RobNet's
    # release decays conv/linear weights only.
    exclude_norm_bias_decay: bool = False
    nesterov: bool = False
    # Clip the gradient norm to this value (0 = no clipping).
    grad_clip: float = 0.0
    # "cyclic": linear from 0 up to lr at cycle_peak of training, then down to 0 (Wong et al.'s Fast AT).
    schedule: Literal["step", "cosine", "constant", "cyclic"] = "step"
    cycle_peak: float = 0.4
    # Step-decay points: values in (0, 1) are fractions of training, values >= 1 are epochs.
    milestones: tuple[float, ...] = (0.75, 0.9)
    lr_gamma: float = 0.1
    warmup_epochs: int = 0
    seed: int = 0
    # "auto": CUDA when the trial was given a GPU, else CPU.
    device: str = "auto"
    # Evaluate on this many validation examples each epoch (0 = all of them).
    eval_limit: int = 0
    # Evaluate every N epochs (the last epoch is always evaluated).
    eval_every: int = 1
    # Which validation number picks the "best" epoch: "auto" = robust accuracy for adversarial methods and
    # clean accuracy for standard training (the most robust epoch of a standard model is an untrained
    # one); "last" keeps the final weights.
    select_by: Literal["auto", "robust", "clean", "last"] = "auto"
    # Weight of the auxiliary-head loss of models that have one (DARTS auxiliary=true; 0.4 in DARTS).
    aux_weight: float = 0.4
    # Mixed-precision training (autocast) on CUDA only; evaluation and its attacks always run in fp32.
    amp: Literal["off", "bf16", "fp16"] = "off"

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, "train.epochs must be >= 1"),
            (self.batch_size >= 1, "train.batch_size must be >= 1"),
            (self.lr > 0, "train.lr must be > 0"),
            (0 <= self.momentum < 1, "train.momentum must be in [0, 1)"),
            (self.weight_decay >= 0, "train.weight_decay must be >= 0"),
            (self.grad_clip >= 0, "train.grad_clip must be >= 0 (0 = off)"),
            (0 < self.lr_gamma <= 1, "train.lr_gamma must be in (0, 1]"),
            (all(m > 0 for m in self.milestones), "train.milestones must be > 0"),
            (0 <= self.warmup_epochs < self.epochs, "train.warmup_epochs must be in [0, epochs)"),
            (self.eval_every >= 1, "train.eval_every must be >= 1"),
            (self.eval_limit >= 0, "train.eval_limit must be >= 0 (0 = all)"),
            (0 < self.cycle_peak < 1, "train.cycle_peak must be in (0, 1)"),
            (self.aux_weight >= 0, "train.aux_weight must be >= 0"),
            (self.amp == "off" or self.device != "cpu", "train.amp needs a CUDA device (train.device=cpu)"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ConfigError(f"train.device must be auto, cpu or cuda[:N], got {self.device!r}")


@dataclass(frozen=True)
class EvalConfig:
    """The end-of-trial evaluation on the test split (see tune_robust.evaluation.suite)."""

    # Attacks: preset names (tune_robust.attacks.presets: fgsm, pgd20, pgd20_step2, pgd100, mim, cw_inf,
    # aa, aa_rand, ...), registered attack names (their defaults at the dataset's eps), or
    # {"name": ..., "label": ..., <options>} dicts. Each gets a test_<label>_acc column.
    attacks: tuple[Any, ...] = ("fgsm", "pgd20")
    # Evaluate the first N test examples (0 = all).
    limit: int = 0
    batch_size: int = 256
    # Sanity flags on the first sanity_examples of the evaluated examples.
    sanity: bool = True
    sanity_examples: int = 256
    # Accuracy tolerance of the sanity flags (e.g. PGD-2k may differ from PGD-k by at most this).
    tolerance: float = 0.02
    # Perturbation stability per attack and empirical Lipschitz constants (logits and every block).
    metrics: bool = True
    # Accuracy-vs-eps table (PGD-20 step eps/4 and FGSM at each eps) and accuracy-vs-iterations table
    # (PGD at the dataset's eps, step eps/4), on the first curve_examples examples. Empty = off.
    eps_curve: tuple[float, ...] = ()
    steps_curve: tuple[int, ...] = ()
    curve_examples: int = 500
    # Normalisation a plain (external) checkpoint expects, applied as a layer: mean and std per channel.
    input_mean: tuple[float, ...] = ()
    input_std: tuple[float, ...] = ()
    # Name of the evaluated checkpoint in the results (the evaluate/transfer sweeps set it).
    label: str = ""
    # Also run the suite on the last epoch's weights (columns last_test_*, last_stability_*, ...), as
    # Huang et al. Table 2 reports Best and Last; the paper fidelities of their sweeps turn it on.
    last: bool = False
    # The transfer sweep: "white_box" crafts on the source itself (RACL Table 3: its diagonal is
    # white-box); "independent_copy" crafts on another training run of each source (RobNet supplement
    # Table 4: no entry is white-box, the diagonal is the transfer between two seeds).
    transfer_protocol: Literal["white_box", "independent_copy"] = "white_box"

    def __post_init__(self) -> None:
        checks = [
            (self.limit >= 0, "eval.limit must be >= 0 (0 = all)"),
            (self.batch_size >= 1, "eval.batch_size must be >= 1"),
            (self.sanity_examples >= 1, "eval.sanity_examples must be >= 1"),
            (0 <= self.tolerance < 1, "eval.tolerance must be in [0, 1)"),
            (all(e >= 0 for e in self.eps_curve), "eval.eps_curve values must be >= 0"),
            (all(k >= 1 for k in self.steps_curve), "eval.steps_curve values must be >= 1"),
            (self.curve_examples >= 1, "eval.curve_examples must be >= 1"),
            (
                len(self.input_mean) == len(self.input_std),
                "eval.input_mean and eval.input_std differ in length",
            ),
            (all(s > 0 for s in self.input_std), "eval.input_std values must be > 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)


def eval_attack_specs(cfg: EvalConfig, dataset: str) -> list[tuple[str, ComponentSpec]]:
    """(label, validated attack spec) for each entry of ``eval.attacks``; labels are unique."""
    from tune_robust.attacks import ATTACKS, PRESETS

    out: list[tuple[str, ComponentSpec]] = []
    for item in cfg.attacks:
        if isinstance(item, str):
            if item in PRESETS:
                label, values = item, dict(PRESETS[item])
            elif item in ATTACKS:
                label, values = item, {"name": item, "eps": "auto"}
            else:
                raise ConfigError(
                    f"eval.attacks: unknown attack {item!r}; presets: {', '.join(sorted(PRESETS))}; "
                    f"attacks: {', '.join(ATTACKS.names())}"
                )
        elif isinstance(item, Mapping):
            values = dict(item)
            label = str(values.pop("label", values.get("name", "attack")))
        else:
            raise ConfigError(f"eval.attacks entries are names or {{'name': ...}} dicts, got {item!r}")
        if not re.fullmatch(r"[A-Za-z0-9_]+", label):
            raise ConfigError(f"eval.attacks label {label!r} must be letters, digits and _ (a column name)")
        if any(label == seen for seen, _ in out):
            raise ConfigError(f"eval.attacks lists {label!r} twice; give dict entries distinct 'label's")
        out.append((label, _attack_spec(values, dataset)))
    return out


@dataclass(frozen=True)
class ComponentSpec:
    """A registered component by name plus its validated keyword arguments."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrialConfig:
    data: DataConfig
    model: ComponentSpec
    train: TrainConfig
    method: ComponentSpec
    attack: ComponentSpec
    eval_attack: ComponentSpec
    eval: EvalConfig = field(default_factory=EvalConfig)
    upstream: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> TrialConfig:
        """Validate a nested trial config (as Ray Tune passes it) into typed sections."""
        unknown = set(cfg) - set(SECTIONS)
        if unknown:
            raise ConfigError(f"unknown config section(s) {sorted(unknown)}; sections: {', '.join(SECTIONS)}")
        data = _dataclass_from(DataConfig, cfg.get("data", {}), "data")
        dataset = data.dataset
        evaluation = _dataclass_from(EvalConfig, cfg.get("eval", {}), "eval")
        eval_attack_specs(evaluation, dataset)  # unknown names and bad options fail here
        train_values = dict(cfg.get("train", {}))
        if "method" in train_values:
            raise ConfigError(
                "train.method moved to its own section: write method.name (and method options such as "
                "method.beta) instead of train.method"
            )
        attack = _attack_spec(cfg.get("attack", {"name": "none"}), dataset)
        return cls(
            data=data,
            model=_model_spec(cfg.get("model", {})),
            train=_dataclass_from(TrainConfig, train_values, "train"),
            method=_method_spec(cfg.get("method", {}), attack),
            attack=attack,
            eval_attack=_attack_spec(cfg.get("eval_attack", {"name": "none"}), dataset),
            eval=evaluation,
            upstream={str(k): str(v) for k, v in dict(cfg.get("upstream", {})).items()},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": dataclasses.asdict(self.data),
            "model": {"arch": self.model.name, **self.model.kwargs},
            "train": dataclasses.asdict(self.train),
            "method": {"name": self.method.name, **self.method.kwargs},
            "attack": {"name": self.attack.name, **self.attack.kwargs},
            "eval_attack": {"name": self.eval_attack.name, **self.eval_attack.kwargs},
            "eval": dataclasses.asdict(self.eval),
            "upstream": dict(self.upstream),
        }


_DC = typing.TypeVar("_DC", DataConfig, TrainConfig, EvalConfig)


def _dataclass_from(cls: type[_DC], values: Mapping[str, Any], section: str) -> _DC:
    kwargs = coerce_kwargs(cls, values, where=section)
    return cls(**kwargs)


def _model_spec(values: Mapping[str, Any]) -> ComponentSpec:
    from tune_robust.models import MODELS

    values = dict(values)
    arch = str(values.pop("arch", "wrn"))
    builder = MODELS.get(arch)
    kwargs = coerce_kwargs(builder, values, where=f"model {arch!r}", skip=("num_classes", "in_channels"))
    return ComponentSpec(arch, kwargs)


def _method_spec(values: Mapping[str, Any], attack: ComponentSpec) -> ComponentSpec:
    """Validate the method section and that the training attack can serve the method."""
    from tune_robust.attacks import create_attack
    from tune_robust.training import create_method

    values = dict(values)
    # Without a method section: PGD-AT when an attack is configured, else standard training.
    name = str(values.pop("name", "pgd_at" if attack.name != "none" else "standard"))
    method = create_method(name, **values)
    method.check_attack(create_attack(attack.name, **attack.kwargs))
    return ComponentSpec(name, method.config())


_EPS_EXPR = re.compile(r"eps((?:[*/][0-9.]+)*)")


def resolve_eps(value: Any, eps: float, key: str) -> Any:
    """Turn ``"eps/10"``-style strings into numbers relative to the resolved ``eps``."""
    if not isinstance(value, str):
        return value
    m = _EPS_EXPR.fullmatch(value.replace(" ", ""))
    if not m:
        return value
    out = eps
    for op, num in re.findall(r"([*/])([0-9.]+)", m.group(1)):
        try:
            out = out * float(num) if op == "*" else out / float(num)
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"{key}: cannot evaluate {value!r}") from None
    return out


def _attack_spec(values: Mapping[str, Any], dataset: str) -> ComponentSpec:
    """Validate an attack section. ``eps: "auto"`` is the dataset's conventional budget (8/255 for
    CIFAR/SVHN, 0.3 for MNIST); other float fields may be written relative to it (``"eps/10"``)."""
    from tune_robust.attacks import create_attack
    from tune_robust.data import DATASETS

    values = dict(values)
    name = str(values.pop("name", "none"))
    if values.get("eps") == "auto":
        values["eps"] = DATASETS.get(dataset).default_eps
    if "eps" in values:
        eps = coerce(values["eps"], float, f"attack {name!r} option 'eps'")
        values = {k: resolve_eps(v, eps, f"attack {name!r} option {k!r}") for k, v in values.items()}
    attack = create_attack(name, **values)  # validates names, types and ranges (e.g. eps >= 0)
    return ComponentSpec(name, attack.config())


# ---------------------------------------------------------------------------------------------------
# Flat dotted keys (--set and Parquet columns)


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and k in SECTIONS and not prefix:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def valid_keys(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Every settable dotted key for a config with these component names -> its annotation."""
    from tune_robust.attacks import ATTACKS
    from tune_robust.models import MODELS
    from tune_robust.training import METHODS

    keys: dict[str, Any] = {}
    sections: tuple[tuple[str, Any], ...] = (
        ("data", DataConfig),
        ("train", TrainConfig),
        ("eval", EvalConfig),
    )
    for section, cls in sections:
        for name, tp in builder_params(cls).items():
            keys[f"{section}.{name}"] = tp
    arch = str(cfg.get("model", {}).get("arch", "wrn"))
    keys["model.arch"] = str
    if arch in MODELS:
        for name, tp in builder_params(MODELS.get(arch), skip=("num_classes", "in_channels")).items():
            keys[f"model.{name}"] = tp
    keys["method.name"] = str
    method = str(cfg.get("method", {}).get("name", "pgd_at"))
    if method in METHODS:
        for name, tp in builder_params(METHODS.get(method)).items():
            keys[f"method.{name}"] = tp
    for section in ("attack", "eval_attack"):
        keys[f"{section}.name"] = str
        attack_name = str(cfg.get(section, {}).get("name", "none"))
        if attack_name in ATTACKS:
            for name, tp in builder_params(ATTACKS.get(attack_name)).items():
                keys[f"{section}.{name}"] = tp
    return keys


def apply_override(cfg: dict[str, Any], key: str, raw: Any) -> None:
    """Set dotted ``key`` in nested ``cfg`` to ``raw`` parsed by the key's type (in place)."""
    keys = valid_keys(cfg)
    if key not in keys:
        raise ConfigError(f"unknown --set key {key!r}; valid keys: {', '.join(sorted(keys))}")
    section, name = key.split(".", 1)
    relative = isinstance(raw, str) and (raw == "auto" or _EPS_EXPR.fullmatch(raw.replace(" ", "")))
    if section in ("attack", "eval_attack") and relative:
        cfg.setdefault(section, {})[name] = raw  # resolved against eps when the config is validated
        return
    cfg.setdefault(section, {})[name] = coerce(raw, keys[key], f"--set {key}")
