"""Transfer (black-box) accuracy: examples crafted on one model, fed to several targets."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tune_robust.attacks import Attack
from tune_robust.data import Split, batches
from tune_robust.evaluation.basic import Tally


@dataclass(frozen=True)
class TransferResult:
    # Accuracy of the target on the transferred examples (the number RobNet's and RACL's tables report).
    accuracy: float
    clean_accuracy: float
    # Correct on the clean example and on its transferred one.
    robust_accuracy: float


def transfer_accuracy(
    source: nn.Module, targets: dict[str, nn.Module], split: Split, attack: Attack, batch_size: int
) -> dict[str, TransferResult]:
    """Craft ``attack`` on ``source`` (in eval mode) batch by batch and score every target on them, in
    fp32; targets' gradients are never used."""
    adv_ok = dict.fromkeys(targets, 0)
    tallies = {t: Tally(["transfer"]) for t in targets}
    with torch.autocast(device_type=split.x.device.type, enabled=False):
        for x, y in batches(split, batch_size):
            x_adv = attack.perturb(source, x, y)
            with torch.no_grad():
                for t, m in targets.items():
                    ok_adv = m(x_adv).argmax(1) == y
                    tallies[t].clean(m(x).argmax(1) == y)
                    tallies[t].attacked("transfer", ok_adv)
                    adv_ok[t] += int(ok_adv.sum())
    n = max(1, len(split))
    return {
        t: TransferResult(
            accuracy=adv_ok[t] / n,
            clean_accuracy=tallies[t].fraction(tallies[t].clean_ok),
            robust_accuracy=tallies[t].fraction(tallies[t].robust["transfer"]),
        )
        for t in targets
    }
