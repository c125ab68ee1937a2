"""Huang et al. Sec. 4.3 / Table 1: the w10-10-4 rule scaled by gamma in {0.25, 0.5, 1, 1.5, 2} (WRN-34;
gamma = 2 is WRN-34-R, 68.12M parameters)."""

from __future__ import annotations

from tune_robust.models.reconfig import r_widths
from tune_robust.search_spaces.wrn_width_grid import NOTES, wrn_fidelities
from tune_robust.sweeps import Grid, SweepSpec, register_sweep

GAMMAS = (0.25, 0.5, 1.0, 1.5, 2.0)


@register_sweep
def wrn_scaling() -> SweepSpec:
    """w10-10-4 x gamma: 1.07M, 4.27M, 17.05M, 38.33M, 68.12M parameters on CIFAR-10."""
    return SweepSpec(
        name="wrn_scaling",
        description="WRN-34 w10-10-4 scaled by gamma in {0.25,0.5,1,1.5,2} (5 configs), PGD-AT",
        trainable="adversarial_training",
        fidelities=wrn_fidelities(),
        space={"model.widths": Grid([r_widths((10.0, 10.0, 10.0), gamma=g) for g in GAMMAS])},
        notes=NOTES,
    )
