"""``evaluate(model, split, attacks)``: accuracy under each attack, always in eval mode and fp32."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from tune_robust.attacks import Attack
from tune_robust.data import Split, batches

__all__ = ["Tally", "evaluate"]


class Tally:
    """Counts of one evaluation pass: correct on clean inputs, correct on clean *and* under each attack
    (robust accuracy as the suite reports it), and under all attacks at once (the per-example worst
    case). Per batch: ``clean(ok)`` first, then ``attacked(label, ok_adv)`` for each attack."""

    def __init__(self, labels: Iterable[str]) -> None:
        self.n = 0
        self.clean_ok = 0
        self.robust = dict.fromkeys(labels, 0)
        self.worst = 0
        self._ok = torch.zeros(0, dtype=torch.bool)
        self._survived = self._ok

    def clean(self, ok: torch.Tensor) -> None:
        self.worst += int(self._survived.sum())  # the previous batch
        self._ok, self._survived = ok, ok.clone()
        self.n += int(ok.numel())
        self.clean_ok += int(ok.sum())

    def attacked(self, label: str, ok_adv: torch.Tensor) -> torch.Tensor:
        robust = self._ok & ok_adv
        self.robust[label] += int(robust.sum())
        self._survived &= robust
        return robust

    def fraction(self, count: int) -> float:
        return count / self.n if self.n else float("nan")

    def worst_fraction(self) -> float:
        return self.fraction(self.worst + int(self._survived.sum()))


def evaluate(
    model: nn.Module, split: Split, attacks: Mapping[str, Attack], batch_size: int = 256, limit: int = 0
) -> dict[str, float]:
    """Accuracy of ``model`` on ``split`` (first ``limit`` examples; 0 = all) under each named attack.

    Returns ``{"<name>_acc": ...}`` per attack plus ``worst_acc``: an example counts as correct only if
    it survives every attack run (the per-example worst case). The model is evaluated in eval mode with
    autocast disabled, whatever mode it came in; its mode is restored afterwards.
    """
    split = split.head(limit)
    n = len(split)
    if n == 0:
        return {f"{name}_acc": float("nan") for name in attacks} | {"worst_acc": float("nan")}
    was_training = model.training
    model.eval()
    correct = {name: 0 for name in attacks}
    worst = 0
    device_type = split.x.device.type
    try:
        with torch.autocast(device_type=device_type, enabled=False):
            for x, y in batches(split, batch_size):
                survived = torch.ones_like(y, dtype=torch.bool)
                for name, attack in attacks.items():
                    x_adv = attack.perturb(model, x, y)
                    with torch.no_grad():
                        ok = model(x_adv.float()).argmax(1) == y
                    correct[name] += int(ok.sum())
                    survived &= ok
                worst += int(survived.sum())
    finally:
        model.train(was_training)
    return {f"{name}_acc": c / n for name, c in correct.items()} | {"worst_acc": worst / n}
