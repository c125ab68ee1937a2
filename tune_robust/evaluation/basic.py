"""``evaluate(model, split, attacks)``: robust accuracy under each attack, always in eval mode and fp32."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from tune_robust.attacks import Attack, Outcome, Starts
from tune_robust.data import Split, batches

__all__ = ["Tally", "attack_batch", "correct", "evaluate", "robust_accuracy"]


def correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per example, whether ``model`` classifies ``x`` as ``y`` (no gradient; the model's mode as is)."""
    with torch.no_grad():
        return model(x).argmax(1) == y


def robust_accuracy(ok: torch.Tensor, ok_adv: torch.Tensor) -> float:
    """Robust accuracy as every number of the product counts it: the fraction of examples classified
    correctly both clean (``ok``) and under the attack (``ok_adv``), so robust <= clean (NaN for no
    examples)."""
    return float((ok & ok_adv).float().mean())


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


def attack_batch(
    attack: Attack,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    ok: torch.Tensor,
    starts: Starts,
    full: bool = False,
) -> Outcome:
    """``attack`` on one batch whose clean correctness is ``ok``, at its cost floor: only the examples
    correct clean are attacked (the others are already wrong at x, and keep x), each until an iterate
    fools it. ``full``: every example and every iteration (the last iterate of each, which perturbation
    stability and the empirical Lipschitz constant are defined on). Robust = ``ok & ~fooled`` either way.
    """
    if full:
        return attack.attack(model, x, y, starts, early_stop=False)
    out = Outcome(x.clone(), ~ok)
    sel = ok.nonzero().squeeze(1)
    if len(sel):
        done = attack.attack(model, x[sel], y[sel], starts.subset(sel), early_stop=True)
        out.x_adv[sel] = done.x_adv.to(x.dtype)
        out.fooled[sel] = done.fooled
        out.notes = done.notes
    return out


def evaluate(
    model: nn.Module,
    split: Split,
    attacks: Mapping[str, Attack],
    batch_size: int = 256,
    limit: int = 0,
    seed: int = 0,
) -> dict[str, float]:
    """Robust accuracy of ``model`` on ``split`` (first ``limit`` examples; 0 = all) under each named
    attack, at the cost floor of ``attack_batch``: an example counts only if it is correct clean and no
    iterate of the attack fools it. Random starts are per example (``Starts``, seeded by ``seed``).

    Returns ``{"<name>_acc": ...}`` per attack plus ``clean_acc`` and ``worst_acc``: correct under every
    attack at once (the per-example worst case). The model is evaluated in eval mode with autocast
    disabled, whatever mode it came in; its mode is restored afterwards.
    """
    split = split.head(limit)
    n = len(split)
    if n == 0:
        nan = float("nan")
        return {f"{name}_acc": nan for name in attacks} | {"clean_acc": nan, "worst_acc": nan}
    was_training = model.training
    model.eval()
    tally = Tally(attacks)
    first = 0
    try:
        with torch.autocast(device_type=split.x.device.type, enabled=False):
            for x, y in batches(split, batch_size):
                ok = correct(model, x, y)
                tally.clean(ok)
                starts = Starts.of_batch(first, len(y), seed)
                for name, attack in attacks.items():
                    tally.attacked(name, ~attack_batch(attack, model, x, y, ok, starts).fooled)
                first += len(y)
    finally:
        model.train(was_training)
    out = {f"{name}_acc": tally.fraction(tally.robust[name]) for name in attacks}
    return out | {"clean_acc": tally.fraction(tally.clean_ok), "worst_acc": tally.worst_fraction()}
