"""The end-of-trial evaluation's own options (the ``eval`` section of a trial config) and its attack list."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tune_robust.attacks import ATTACKS, PRESETS, attack_spec
from tune_robust.coerce import ComponentSpec
from tune_robust.data import DATASETS
from tune_robust.errors import ConfigError


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
    # Random starts: example i's start under restart k depends only on (seed, i, k), so every number
    # is the same whatever batch size or subset the example is attacked in.
    seed: int = 0
    # Attack at the cost floor: only examples correct clean, each until an iterate fools it, restarts
    # and the sanity checks' stronger PGDs only for the survivors, the suite's results reused by the
    # checks. False attacks every example through every iteration: the same numbers, slower (a check).
    cost_floor: bool = True
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
    # The evaluated checkpoint's published clean and AutoAttack accuracy (RobustBench's leaderboard, set
    # by planning for a robustbench: checkpoint when --leaderboard is given), reported beside ours.
    leaderboard_clean_acc: float | None = None
    leaderboard_autoattack_acc: float | None = None
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
        out.append((label, attack_spec(values, DATASETS.get(dataset).default_eps)))
    return out
