"""Each family vs its "-R" reconfiguration (Huang et al. Sec. 5 / Table 2) under the same method: VGG-11,
DenseNet-121, the DARTS genotype network and WRN-34 (the -R widths come from
tune_robust.models.reconfig, so the rule lives in one place)."""

from __future__ import annotations

from typing import Any

from tune_robust.models.reconfig import r_config
from tune_robust.search_spaces.wrn import MINI_DIGITS, PAPER_CIFAR10, SMOKE_DIGITS, TABLE2_EVAL
from tune_robust.sweeps import Grid, SweepSpec, Variants, register_sweep

# (arch, kwargs the -R rule is applied to, gamma, kwargs of the network it is compared with: None = the
# same kwargs as the rule's input).
Family = tuple[str, dict[str, Any], float, dict[str, Any] | None]


def pairs(families: list[Family]) -> list[dict[str, Any]]:
    """Each family's model section and its -R model section, labelled ``<arch>`` and ``<arch>-R``
    (``eval.label``: the claims pair them by it)."""
    out = []
    for arch, kwargs, gamma, compare in families:
        family, base, r_kwargs = r_config(arch, kwargs, gamma=gamma)
        out.append({"model": {"arch": family, **(base if compare is None else compare)}, "eval.label": arch})
        out.append({"model": {"arch": family, **r_kwargs}, "eval.label": f"{arch}-R"})
    return out


# Huang et al. Table 2: VGG-11, DN-121 and "a network found by DARTS with 11 cells" against their -R
# versions at gamma = 1, and WRN-34-R (w10-10-4 of WRN-34-10, scaled by gamma = 2) against WRN-34-12,
# "to make sure the two models have a similar amount of parameters". The DARTS network's size is not
# given beyond 11 cells and its counts (6.58M -> 2.53M); C = 72 pins them (6.61M -> 2.54M).
WRN_34 = {"depths": (5, 5, 5), "widths": (10.0, 10.0, 10.0)}
# Widths are written out (the builders' defaults, tests/test_zoo.py checks they are) so that defining the
# sweep builds nothing: `sweep.py --list` imports no torch.
PAPER_FAMILIES: list[Family] = [
    ("vgg11", {"widths": (1.0, 1.0, 1.0, 1.0, 1.0)}, 1.0, None),
    ("densenet121", {"widths": (1.0, 1.0, 1.0, 1.0)}, 1.0, None),
    ("darts", {"genotype": "DARTS_V2", "channels": 72, "layers": 11, "widths": (1.0, 1.0, 1.0)}, 1.0, None),
    ("wrn", WRN_34, 2.0, {**WRN_34, "widths": (12.0, 12.0, 12.0)}),
]
SMOKE_FAMILIES: list[Family] = [
    ("vgg11", {"widths": (0.125, 0.125, 0.125, 0.125, 0.125)}, 1.0, None),
    ("densenet121", {"growth": 4, "widths": (1.0, 1.0, 1.0, 1.0)}, 1.0, None),
    ("darts", {"genotype": "DARTS_V2", "channels": 8, "layers": 5, "widths": (1.0, 1.0, 1.0)}, 1.0, None),
    (
        "wrn",
        {**WRN_34, "width_scale": 0.05},
        2.0,
        {**WRN_34, "widths": (12.0, 12.0, 12.0), "width_scale": 0.05},
    ),
]


@register_sweep
def arch_reconfig() -> SweepSpec:
    """Family vs family-R, same PGD-AT recipe (8 configs)."""
    paper = {**{k: v for k, v in PAPER_CIFAR10.items() if k != "model"}, "eval": TABLE2_EVAL}
    smoke = {k: v for k, v in SMOKE_DIGITS.items() if k != "model"}
    mini = {k: v for k, v in MINI_DIGITS.items() if k != "model"}
    return SweepSpec(
        name="arch_reconfig",
        description="VGG-11, DenseNet-121, DARTS-11, WRN-34-12 vs the -R versions under PGD-AT (8 configs)",
        trainable="adversarial_training",
        fidelities={"smoke": smoke, "mini": mini, "paper": paper},
        space={"model": Variants(pairs(PAPER_FAMILIES))},
        fidelity_space={
            "smoke": {"model": Variants(pairs(SMOKE_FAMILIES))},
            # Three seeds per network: the -R claim is a paired difference, judged across families and
            # seeds.
            "mini": {"model": Variants(pairs(SMOKE_FAMILIES)), "train.seed": Grid([0, 1, 2])},
        },
        notes={
            "smoke": "digits, narrow families (and WRN x 0.05), 5 epochs PGD-3 AT eps 0.1",
            "mini": "the smoke networks and recipe without the sanity flags, seeds 0-2 (24 trials)",
            "paper": "cifar10, 100 epochs PGD-10 AT at 8/255 (Huang's SAT), FGSM / PGD-20 / CW-inf",
        },
    )
