"""CW-inf: the Carlini-Wagner margin loss optimised by L-inf PGD (as in Huang et al. Table 2, RNAS-CL
Table 4, and the TRADES/MART evaluation code)."""

from __future__ import annotations

from dataclasses import dataclass

from tune_robust.attacks._base import Loss, register_attack
from tune_robust.attacks.pgd import PGD


@register_attack("cw_inf")
@dataclass(frozen=True)
class CWInf(PGD):
    step: float = 0.8 / 255
    steps: int = 30
    loss: Loss = "margin"
