"""CW-inf: the Carlini-Wagner margin loss optimised by L-inf PGD (Huang et al. Table 2, RNAS-CL Table 4).

Defaults follow Huang et al.'s released evaluator (``_cw_whitebox``, as in the TRADES/MART evaluation
code): 20 steps of step 0.003 (~eps/10 at 8/255) on the margin clipped at 0 (``-relu(z_y - z_j)``,
so an example stays where it was first misclassified), from a uniform start that is not clipped to
[0, 1] before the first gradient."""

from __future__ import annotations

from dataclasses import dataclass

from tune_robust.attacks._base import Loss, register_attack
from tune_robust.attacks.pgd import PGD


@register_attack("cw_inf")
@dataclass(frozen=True)
class CWInf(PGD):
    step: float = 0.8 / 255
    steps: int = 20
    loss: Loss = "clipped_margin"
    clip_start: bool = False
