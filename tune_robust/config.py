"""Typed, validated trial configuration, and the one place a Ray Tune config dict becomes one.

A trial config is a nested dict with five sections (this is what Ray Tune sees and stores)::

    {"data": {...DataConfig fields...},
     "model": {"arch": "wrn", <keyword arguments of the registered builder>},
     "train": {...TrainConfig fields...},
     "method": {"name": "pgd_at", <method options>},   # training method (tune_robust.training)
     "attack": {"name": "pgd", <attack fields>},       # used by the training method
     "eval_attack": {"name": "pgd", <attack fields>},  # per-epoch validation (best-epoch selection)
     "eval": {...EvalConfig fields...},                # the final test evaluation suite
     "screen": {...ScreenConfig fields...},            # a check of the initial weights before training
     "arch_step": {...ArchStepConfig fields...},       # the architecture step of a differentiable search
     "upstream": {<artifact name>: <path>}}           # filled by the runner for multi-stage sweeps

Flat dotted keys (``train.epochs``, ``model.depths``) address single values for ``--set`` and are the
Parquet column names. Values given as strings (from the command line) are parsed by the field's type;
``8/255`` is accepted wherever a float is.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tune_robust.coerce import ComponentSpec, builder_params, coerce, coerce_kwargs, is_eps_relative
from tune_robust.errors import ConfigError
from tune_robust.evaluation.settings import EvalConfig, eval_attack_specs
from tune_robust.registry import did_you_mean

__all__ = [
    "SECTIONS",
    "ArchStepConfig",
    "ComponentSpec",
    "DataConfig",
    "EvalConfig",
    "ScreenConfig",
    "TrainConfig",
    "TrialConfig",
    "UpstreamInputs",
    "apply_override",
    "flatten",
    "valid_keys",
]

SECTIONS = (
    "data",
    "model",
    "train",
    "method",
    "attack",
    "eval_attack",
    "eval",
    "screen",
    "arch_step",
    "upstream",
)


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
    # Mixed-precision training (autocast): bf16 on CUDA or on a CPU with native bf16 (AVX512-BF16/AMX),
    # fp16 (with loss scaling) on CUDA only; evaluation and its attacks always run in fp32.
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
            (
                self.amp != "fp16" or self.device != "cpu",
                "train.amp=fp16 needs a CUDA device (train.device=cpu); on a CPU use train.amp=bf16",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ConfigError(f"train.device must be auto, cpu or cuda[:N], got {self.device!r}")


@dataclass(frozen=True)
class ScreenConfig:
    """A check of a trial's initial (inherited) weights before any training; a rejected trial stops
    there (RobNet's cell-free search: the FSP-matrix distance of tune_robust.evaluation.fsp)."""

    # Compute the FSP distance between clean and training-attack inputs before the first epoch.
    fsp: bool = False
    # Keep the architecture only if its distance (mean over the last fsp_cells cells) is at most this;
    # None: record the distances, reject nothing.
    fsp_threshold: float | None = None
    fsp_cells: int = 10
    # On the first N examples of the validation split (of the training split when there is none).
    fsp_examples: int = 256

    def __post_init__(self) -> None:
        if self.fsp_cells < 1 or self.fsp_examples < 1:
            raise ConfigError("screen.fsp_cells and screen.fsp_examples must be >= 1")
        if self.fsp_threshold is not None and self.fsp_threshold < 0:
            raise ConfigError(f"screen.fsp_threshold must be >= 0 (or None), got {self.fsp_threshold}")
        if self.fsp_threshold is not None and not self.fsp:
            raise ConfigError("screen.fsp_threshold needs screen.fsp=true")


@dataclass(frozen=True)
class ArchStepConfig:
    """The architecture step of a differentiable one-shot search (a supernet with architecture
    parameters: RACL's log-normal mu and sigma). Before every weight step, one step of the
    architecture parameters on a batch drawn at random from the architecture split (as PC-DARTS
    draws it), with their own optimiser (Adam), after ``warmup_epochs`` epochs of weights only."""

    # Share of the training split that updates the architecture; the rest updates the weights. Must be
    # > 0 for a model with architecture parameters, 0 otherwise. RACL and PC-DARTS: 0.5.
    fraction: float = 0.0
    # Adam on the architecture parameters: RACL (= PC-DARTS): LR 6e-4, weight decay 1e-3; the betas
    # (0.5, 0.999) are DARTS' and PC-DARTS' (RACL does not give them).
    lr: float = 6e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 1e-3
    # Weight-only epochs before the first architecture step (PC-DARTS: 15 of 50).
    warmup_epochs: int = 0

    def __post_init__(self) -> None:
        checks = [
            (0 <= self.fraction < 1, f"arch_step.fraction must be in [0, 1), got {self.fraction}"),
            (self.lr > 0, "arch_step.lr must be > 0"),
            (
                len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
                "arch_step.betas: two values in [0, 1)",
            ),
            (self.weight_decay >= 0, "arch_step.weight_decay must be >= 0"),
            (self.warmup_epochs >= 0, "arch_step.warmup_epochs must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)


TARGET_PREFIX = "target:"


@dataclass(frozen=True, eq=False)  # (Mapping's equality: equal to a dict of the same paths)
class UpstreamInputs(Mapping[str, str]):
    """The files a trial takes from outside its config (the ``upstream`` section, filled in by planning):
    a read-only mapping of role to path. Roles: ``model`` (an evaluate trial's checkpoint), ``source``,
    ``craft`` and ``targets`` (a transfer trial's source, the copy its examples are crafted on, the
    targets by label: keys ``target:LABEL``), ``init`` (the first weights of the trial's model), and any
    other name a method loads (RNAS-CL's ``teacher``). ``TrialConfig.to_dict`` writes it back as the
    plain mapping Ray Tune stores."""

    paths: Mapping[str, str]

    # Roles whose checkpoint a trial builds as its own model.arch when it is a plain state dict; the
    # others (a teacher) must be checkpoints of ours, which name their architecture.
    TRIAL_MODEL_ROLES: typing.ClassVar[tuple[str, ...]] = ("model", "source", "craft", "init")

    def __getitem__(self, role: str) -> str:
        return self.paths[role]

    def __iter__(self) -> typing.Iterator[str]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def model(self) -> str | None:
        return self.paths.get("model")

    @property
    def source(self) -> str | None:
        return self.paths.get("source")

    @property
    def craft(self) -> str | None:
        return self.paths.get("craft")

    @property
    def init(self) -> str | None:
        return self.paths.get("init")

    @property
    def targets(self) -> dict[str, str]:
        """Target checkpoints by label."""
        return {k[len(TARGET_PREFIX) :]: v for k, v in self.paths.items() if k.startswith(TARGET_PREFIX)}

    @staticmethod
    def target_key(label: str) -> str:
        return f"{TARGET_PREFIX}{label}"

    @classmethod
    def builds_trial_model(cls, role: str) -> bool:
        """Whether a plain state dict in this role is built as the trial's own ``model.arch``."""
        return role in cls.TRIAL_MODEL_ROLES or role.startswith(TARGET_PREFIX)


@dataclass(frozen=True)
class TrialConfig:
    data: DataConfig
    model: ComponentSpec
    train: TrainConfig
    method: ComponentSpec
    attack: ComponentSpec
    eval_attack: ComponentSpec
    eval: EvalConfig = field(default_factory=EvalConfig)
    screen: ScreenConfig = field(default_factory=ScreenConfig)
    arch_step: ArchStepConfig = field(default_factory=ArchStepConfig)
    upstream: UpstreamInputs = field(default_factory=lambda: UpstreamInputs({}))

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> TrialConfig:
        """Validate a nested trial config (as Ray Tune passes it) into typed sections."""
        if "search" in cfg:  # ("search" names the sweep's hyperparameter search strategy only)
            raise ConfigError(
                "unknown config section 'search': a differentiable search's architecture step is set in "
                "the arch_step section (arch_step.fraction, arch_step.lr, arch_step.betas, "
                "arch_step.weight_decay, arch_step.warmup_epochs)"
            )
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
            screen=_dataclass_from(ScreenConfig, cfg.get("screen", {}), "screen"),
            arch_step=_dataclass_from(ArchStepConfig, cfg.get("arch_step", {}), "arch_step"),
            upstream=UpstreamInputs({str(k): str(v) for k, v in dict(cfg.get("upstream", {})).items()}),
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
            "screen": dataclasses.asdict(self.screen),
            "arch_step": dataclasses.asdict(self.arch_step),
            "upstream": dict(self.upstream),
        }


_DC = typing.TypeVar("_DC", DataConfig, TrainConfig, EvalConfig, ScreenConfig, ArchStepConfig)


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


def _attack_spec(values: Mapping[str, Any], dataset: str) -> ComponentSpec:
    """An attack section, ``eps: "auto"`` being the dataset's conventional budget."""
    from tune_robust.attacks import attack_spec
    from tune_robust.data import DATASETS

    return attack_spec(values, DATASETS.get(dataset).default_eps)


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
        ("screen", ScreenConfig),
        ("arch_step", ArchStepConfig),
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
    """Set dotted ``key`` in nested ``cfg`` to ``raw`` parsed by the key's type (in place).
    ``upstream.ROLE`` names a trial input by hand (a checkpoint path or a robustbench: reference, e.g.
    RNAS-CL's ``upstream.teacher``), in place of the earlier sweep that would give it."""
    if key.startswith("upstream.") and key.count(".") == 1 and key != "upstream.":
        cfg.setdefault("upstream", {})[key.split(".", 1)[1]] = str(raw)
        return
    keys = valid_keys(cfg)
    if key not in keys:
        raise ConfigError(
            f"unknown --set key {key!r}{did_you_mean(key, keys)}; valid keys: {', '.join(sorted(keys))}"
        )
    section, name = key.split(".", 1)
    if section in ("attack", "eval_attack") and is_eps_relative(raw):
        cfg.setdefault(section, {})[name] = raw  # resolved against eps when the config is validated
        return
    cfg.setdefault(section, {})[name] = coerce(raw, keys[key], f"--set {key}")
