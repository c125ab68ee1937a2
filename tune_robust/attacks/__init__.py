"""Attack registry; one file per attack, plus the seed papers' evaluation presets.

Example:
    >>> from tune_robust.attacks import create_attack
    >>> create_attack("pgd", eps="8/255", steps=20).describe()
    'pgd20-linf-eps0.03137-step0.007843'
"""

from tune_robust.attacks._base import (
    ATTACKS,
    Attack,
    BatchNote,
    NoAttack,
    Outcome,
    Starts,
    attack_loss,
    attack_spec,
    create_attack,
    register_attack,
)
from tune_robust.attacks.presets import PRESETS

__all__ = [
    "ATTACKS",
    "PRESETS",
    "Attack",
    "BatchNote",
    "NoAttack",
    "Outcome",
    "Starts",
    "attack_loss",
    "attack_spec",
    "create_attack",
    "register_attack",
]
