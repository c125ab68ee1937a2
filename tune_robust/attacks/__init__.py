"""Attack registry; one file per attack.

Example:
    >>> from tune_robust.attacks import create_attack
    >>> create_attack("pgd", eps="8/255", steps=20).describe()
    'pgd20-linf-eps0.03137-step0.007843'
"""

from tune_robust.attacks import fgsm, pgd  # noqa: F401  (registration)
from tune_robust.attacks._base import ATTACKS, Attack, NoAttack, create_attack, register_attack

__all__ = ["ATTACKS", "Attack", "NoAttack", "create_attack", "register_attack"]
