"""Training method x architecture in the layout of Huang et al. Table 2: SAT (PGD-AT), TRADES and MART
on WRN-34-12 and WRN-34-R (similar parameter counts: 66.46M vs 68.12M). The smoke fidelity adds Free
and Fast AT and shrinks both networks by 0.05 on the embedded digits."""

from __future__ import annotations

from typing import Any

from tune_robust.search_spaces.wrn import PAPER_CIFAR10, SMOKE_DIGITS, TABLE2_EVAL
from tune_robust.sweeps import Grid, SweepSpec, Variants, register_sweep

# Huang et al. Table 2: SAT / TRADES (beta 6) / MART (beta 6) share the PGD-10 inner maximisation.
PAPER_METHODS: list[dict[str, Any]] = [{"method": {"name": m}} for m in ("pgd_at", "trades", "mart")]
SMOKE_METHODS: list[dict[str, Any]] = [
    *PAPER_METHODS,
    # Free reads only eps from its attack (its FGSM steps of size eps happen inside the replays).
    {"method": {"name": "free", "replays": 4}, "attack": {"name": "fgsm", "eps": "auto"}},
    {
        "method": {"name": "fast"},
        "attack": {"name": "fgsm", "eps": "auto", "step": "eps*1.25", "random_start": True},
    },
]
ARCHS = Grid([(12.0, 12.0, 12.0), (20.0, 20.0, 8.0)])  # WRN-34-12 and WRN-34-R (d5-5-5)


@register_sweep
def at_methods() -> SweepSpec:
    """Each method trains each architecture; compare within a method (Table 2 rows)."""
    smoke = {**SMOKE_DIGITS, "model": {"arch": "wrn", "depths": (5, 5, 5), "width_scale": 0.05}}
    paper = {**PAPER_CIFAR10, "model": {"arch": "wrn", "depths": (5, 5, 5)}, "eval": TABLE2_EVAL}
    return SweepSpec(
        name="at_methods",
        description="training method x architecture: SAT/TRADES/MART x WRN-34-12 vs WRN-34-R (6 configs)",
        trainable="adversarial_training",
        fidelities={"smoke": smoke, "paper": paper},
        space={"method": Variants(PAPER_METHODS), "model.widths": ARCHS},
        fidelity_space={"smoke": {"method": Variants(SMOKE_METHODS), "model.widths": ARCHS}},
        notes={
            "smoke": "digits, WRN-34-12 / WRN-34-R x 0.05, 5 epochs; SAT, TRADES, MART, Free (m=4), Fast",
            "paper": "cifar10, WRN-34-12 vs WRN-34-R, 100 epochs, SAT/TRADES/MART with PGD-10 at 8/255",
        },
    )
