"""Huang et al. Sec. 4.2 / Fig. 3a-c: per-stage widths W_i in {2, 4, 6, 8, 10} with the other two stages
at 10 (15 configs, d5-5-5), and ``wrn_width_grid_full`` with all 125 width combinations."""

from __future__ import annotations

import itertools

from tune_robust.search_spaces.wrn import MINI_DIGITS, PAPER_CIFAR10, SMOKE_DIGITS
from tune_robust.sweeps import Grid, SweepSpec, register_sweep

WIDTHS = (2, 4, 6, 8, 10)
# Smoke fidelity: the paper's width factors x 0.05 (W = 10 -> 0.5, the depth-grid smoke's width).
SMOKE_SCALE = 0.05


def one_stage_at_a_time() -> list[tuple[float, float, float]]:
    configs = []
    for stage in range(3):
        for w in WIDTHS:
            widths = [10.0, 10.0, 10.0]
            widths[stage] = float(w)
            configs.append((widths[0], widths[1], widths[2]))
    return configs


def wrn_fidelities(depths: tuple[int, int, int] = (5, 5, 5)) -> dict[str, dict[str, object]]:
    """The depth grid's smoke/paper settings with the model at fixed depths; the grid sets the paper's
    width factors and the smoke fidelity shrinks them all by SMOKE_SCALE."""
    small = {"arch": "wrn", "depths": depths, "width_scale": SMOKE_SCALE}
    smoke = {**SMOKE_DIGITS, "model": small}
    mini = {**MINI_DIGITS, "model": small}
    paper = {**PAPER_CIFAR10, "model": {"arch": "wrn", "depths": depths}}
    return {"smoke": smoke, "mini": mini, "paper": paper}


NOTES = {
    "smoke": "digits, d5-5-5, widths x 0.05 (W=10 -> 0.5), 5 epochs PGD-3 AT eps 0.1",
    "mini": "the smoke recipe without the sanity flags (the claims' fidelity)",
    "paper": "cifar10, d5-5-5 (WRN-34), 100 epochs PGD-10 AT eps 8/255, PGD-20 eval step eps/10",
}


@register_sweep
def wrn_width_grid() -> SweepSpec:
    """Each stage's width in {2,4,6,8,10} with the other two at 10: 15 configs (5 duplicates of w10-10-10
    are kept, one per stage, as in the figure's three panels)."""
    return SweepSpec(
        name="wrn_width_grid",
        description="WRN-34 per-stage width study, W_i in {2,4,6,8,10}, others at 10 (15 configs), PGD-AT",
        trainable="adversarial_training",
        fidelities=wrn_fidelities(),
        space={"model.widths": Grid(one_stage_at_a_time())},
        notes=NOTES,
    )


@register_sweep
def wrn_width_grid_full() -> SweepSpec:
    """All 125 width combinations W_1, W_2, W_3 in {2,4,6,8,10} (the option the paper skips)."""
    return SweepSpec(
        name="wrn_width_grid_full",
        description="WRN-34 full width grid, W1,W2,W3 in {2,4,6,8,10} (125 configs), PGD-AT",
        trainable="adversarial_training",
        fidelities=wrn_fidelities(),
        space={
            "model.widths": Grid([tuple(float(w) for w in c) for c in itertools.product(WIDTHS, repeat=3)])
        },
        notes=NOTES,
    )
