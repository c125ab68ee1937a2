"""AutoAttack (Croce & Hein, ICML 2020) through the ``pyautoattack`` package, not a copy of it.

``version="standard"`` runs APGD-CE, APGD-T, FAB-T and Square on the points still robust after each;
``"rand"`` runs APGD-CE and APGD-DLR with 20 EOT iterations (for randomised defences); ``"plus"`` is
the stronger, slower set. AutoAttack's own checks (randomised or dynamic defence, probability outputs,
Square beating the white-box attacks, too few classes) are logged by the library; ``perturb_with_notes``
returns them so they land in the results as the ``sanity_autoattack`` flag.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from tune_robust.attacks._base import Attack, BatchNote, check_eps, register_attack
from tune_robust.errors import ConfigError

AA_LOGGER = "auto-attack"
# pyautoattack's check that Square (black-box) did better than the white-box attacks before it, per call.
_SQUARE = re.compile(r"Square Attack has decreased the robust accuracy of ([\d.]+)%")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@register_attack("autoattack")
@dataclass(frozen=True)
class AutoAttackPA(Attack):
    self_checking = True
    eps: float = 8 / 255
    norm: Literal["linf", "l2"] = "linf"
    version: Literal["standard", "rand", "plus"] = "standard"
    seed: int = 0

    def __post_init__(self) -> None:
        check_eps(self.eps)

    @property
    def gradient_steps(self) -> int:
        # Upper bound per example for standard: APGD-CE 100 + APGD-T 9 x 100 + FAB-T 9 x 100 iterations
        # (Square's 5,000 queries are forward passes only); rand: 2 x 100 x 20 EOT.
        return {"standard": 1900, "rand": 4000, "plus": 5 * 100 + 5 * 100 + 900 + 900}[self.version]

    def describe(self) -> str:
        return f"aa-{self.version}-{self.norm}-eps{self.eps:.4g}"

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.perturb_with_notes(model, x, y)[0]

    def summarize_notes(self, notes: Sequence[BatchNote], evaluated: int) -> list[str]:
        """The Square check as one line with its total over the evaluation (pyautoattack states it per
        call, i.e. per batch, as a share of that batch's attacked examples); other checks as the base
        class groups them."""
        hits = [(n, float(m.group(1))) for n in notes if (m := _SQUARE.search(n.text))]
        rest = super().summarize_notes([n for n in notes if not _SQUARE.search(n.text)], evaluated)
        if not hits:
            return rest
        flipped = sum(share / 100 * n.attacked for n, share in hits)
        shares = [share for _, share in hits]
        batches = (
            f"in {len(hits)} batches, {min(shares):.2f}% to {max(shares):.2f}% of each one's attacked "
            "examples"
            if len(hits) > 1
            else f"in 1 batch, {shares[0]:.2f}% of its attacked examples"
        )
        line = (
            f"Square Attack (black-box) lowered the robust accuracy below the white-box attacks' by "
            f"{100 * flipped / max(evaluated, 1):.2f}% of the {evaluated} evaluated examples ({batches}): "
            f"the gradient-based attacks may be masked; run Square with more queries and restarts, or an "
            f"adaptive attack"
        )
        return [line, *rest]

    def perturb_with_notes(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, list[str]]:
        try:
            from pyautoattack import AutoAttack
        except ImportError as e:  # a declared dependency; only a broken install gets here
            raise ConfigError(
                "attack 'autoattack' needs the pyautoattack package: pip install pyautoattack"
            ) from e
        device = x.device
        with torch.no_grad():
            n_classes = int(model(x[:1]).shape[-1])
        if n_classes < 4 and self.version != "rand":
            raise ConfigError(
                f"AutoAttack's {self.version} version needs >= 4 classes (targeted DLR loss); the model "
                f"has {n_classes}: use aa_rand (APGD-CE/DLR needs 3) or PGD/CW-inf attacks"
            )
        aa = AutoAttack(
            model,
            eps=self.eps,
            norm="Linf" if self.norm == "linf" else "L2",
            version=self.version,
            seed=self.seed,
            device=device,
        )
        # Standard AA targets the 9 most likely wrong classes; with fewer classes, all of them.
        aa.apgd_targeted.n_target_classes = min(aa.apgd_targeted.n_target_classes, n_classes - 1)
        aa.fab.n_target_classes = min(aa.fab.n_target_classes, n_classes - 1)
        logger = logging.getLogger(AA_LOGGER)
        handler = _Collect()
        logger.addHandler(handler)
        # Some of the library's attacks call backward() on the model's output, which would fill the
        # parameters' .grad: freeze them for the call (input gradients are unaffected, and faster).
        frozen = [p for p in model.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            # pyautoattack returns (x_adv, y_adv); x_adv equals x where no attack succeeded.
            x_adv, _ = aa.run_standard_evaluation(x.contiguous(), y, batch_size=len(x))
        finally:
            logger.removeHandler(handler)
            for p in frozen:
                p.requires_grad_(True)
        return x_adv.detach().to(device), handler.messages
