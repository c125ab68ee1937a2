"""Automatic sanity checks of a robustness evaluation (the failure modes of Athalye et al. 2018 and
Carlini et al. 2019, "On Evaluating Adversarial Robustness"), run on a fixed evaluation subset.

Each check is a boolean column ``sanity_<name>`` (True = passed, null = not applicable) and a warning
when it fails. ``suspect_gradient_masking`` is True when any masking indicator fails: iterative weaker
than single-step, accuracy rising with eps, a huge eps not reaching chance, non-deterministic outputs,
zero or non-finite input gradients, probability outputs, or AutoAttack's own flags.
``steps_converged`` (doubling the steps or adding restarts changes accuracy by more than the tolerance)
says the configured attack is too weak for this model, a property of the evaluation rather than proof
of masking; ``eps0``, ``adv_le_clean`` and ``bn_unchanged`` catch evaluation bugs.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tune_robust.attacks import Attack, Outcome, Starts, create_attack
from tune_robust.attacks._base import input_grad
from tune_robust.attacks.pgd import PGD, Variant
from tune_robust.evaluation.basic import correct, robust_accuracy

MASKING_FLAGS = (
    "iterative_ge_fgsm",
    "monotone_eps",
    "large_eps_chance",
    "deterministic",
    "gradients",
    "logits",
    "autoattack",
)
ALL_FLAGS = ("eps0", "adv_le_clean", "bn_unchanged", "steps_converged", *MASKING_FLAGS)
# eps multiples of the accuracy-vs-eps monotonicity check
EPS_FACTORS = (0.25, 0.5, 1.0, 2.0)


def buffers_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: b.detach().clone() for k, b in model.named_buffers()}


def buffers_unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> bool:
    now = dict(model.named_buffers())
    return set(now) == set(before) and all(torch.equal(now[k], v) for k, v in before.items())


def sanity_attack(attacks: list[Attack], default_eps: float) -> PGD:
    """The PGD the checks vary: the suite's first PGD-type attack, else PGD-20 step eps/10."""
    for a in attacks:
        if isinstance(a, PGD) and a.norm == "linf":
            return dataclasses.replace(a, restarts=1)
    eps = next((float(a.eps) for a in attacks if hasattr(a, "eps")), default_eps)
    return PGD(eps=eps, step=eps / 10, steps=20)


# A user-supplied attack runner (tests: deliberately broken attacks): (attack, x, y) -> x_adv.
Run = Callable[[Attack, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Known:
    """An attack's outcome on the checks' examples that the suite already computed (the checks reuse
    it): ``full`` when every example ran every iteration, else at the cost floor."""

    attack: Attack
    outcome: Outcome
    full: bool = False


class _Probe:
    """One model, one evaluation subset and the PGD the checks vary; collects flags and messages.

    Accuracies are robust accuracies at the cost floor (``attack_batch``): an example counts if it is
    correct clean and no iterate fools it, and only the examples correct clean are attacked. Results the
    suite already has (``known``) are reused, and PGD with twice the steps or three restarts extends
    the PGD result instead of starting over (same starts, so the numbers are those of the full runs).
    """

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        pgd: PGD,
        tol: float,
        run: Run | None,
        known: list[Known],
        seed: int,
        floor: bool = True,
    ):
        self.model, self.x, self.y, self.pgd, self.tol, self.run = model, x, y, pgd, tol, run
        self.floor = floor
        self.known = list(known)
        self.starts = Starts.of_batch(0, len(y), seed)
        self.ok = correct(model, x, y)
        self.flags: dict[str, bool | None] = {}
        self.msgs: list[str] = []
        self._batch: dict[str, float] | None = None
        self._eps0_moved = False  # (batched) an eps = 0 iterate left x

    def check(self, name: str, ok: bool, why: str) -> None:
        self.flags[name] = bool(ok)
        if not ok:
            self.msgs.append(f"sanity_{name} failed: {why}")

    def _attack(
        self, attack: Attack, which: torch.Tensor, early_stop: bool, draw: int = 0, key: Attack | None = None
    ) -> Outcome:
        """``attack`` on the examples ``which``, from draw ``draw`` of its starts (of ``key``'s: another
        attack's starts)."""
        x, y = self.x[which], self.y[which]
        if self.run is not None:
            x_adv = self.run(attack, x, y)
            with torch.no_grad():
                return Outcome(x_adv, self.model(x_adv).argmax(1) != y)
        starts = self.starts.subset(which).shifted(draw)
        return attack.attack(self.model, x, y, starts.keyed(key) if key else starts, early_stop)

    def _find(self, attack: Attack) -> Known | None:
        return next((k for k in self.known if k.attack == attack), None)

    def outcome(self, attack: Attack) -> Outcome:
        """``attack`` on the subset at the cost floor (or the suite's own result for it); without the
        floor, on every example through every iteration."""
        found = self._find(attack)
        if found is not None:
            return found.outcome
        everyone = torch.arange(len(self.y), device=self.y.device)
        if not self.floor:
            out = self._attack(attack, everyone, early_stop=False)
            self.known.append(Known(attack, out, full=True))
            return out
        out = Outcome(self.x.clone(), ~self.ok)
        sel = self.ok.nonzero().squeeze(1)
        if len(sel):
            done = self._attack(attack, sel, early_stop=True)
            out.x_adv[sel], out.fooled[sel] = done.x_adv, done.fooled
        self.known.append(Known(attack, out))
        return out

    def acc(self, attack: Attack) -> float:
        """Robust accuracy on the subset under ``attack``."""
        return robust_accuracy(self.ok, ~self.outcome(attack).fooled)

    def varied(self, **changes: Any) -> float:
        """Accuracy under the checks' PGD with ``changes`` (eps, step, steps)."""
        return self.acc(dataclasses.replace(self.pgd, **changes))

    def lifted(self, attack: Attack) -> float:
        """The fraction of the subset that is wrong clean and right at the attack's last iterate (an
        attack that helps the model: a sign error, wrong labels)."""
        wrong = (~self.ok).nonzero().squeeze(1)
        if not len(wrong):
            return 0.0
        found = self._find(attack)
        if found is not None and found.full:
            x_adv = found.outcome.x_adv[wrong]
        else:
            x_adv = self._attack(attack, wrong, early_stop=False).x_adv
        with torch.no_grad():
            return float((self.model(x_adv).argmax(1) == self.y[wrong]).sum()) / len(self.y)

    def batched(self) -> dict[str, float]:
        """Accuracies of the checks' k-step PGD variants, all run as one batch (one forward-backward
        per step for all of them, instead of one per variant): eps x 0 (every example), 1/4, 1/2 and 2,
        PGD-2k (PGD-k's
        survivors continued), restarts 2 and 3 (PGD-k's survivors), and the eps = 1 attack when it has
        the same steps and loss. Empty (each check runs its own attack) without the cost floor, for a
        user's runner, or for an L2 PGD."""
        if self._batch is None:
            usable = self.floor and self.run is None and self.pgd.norm == "linf"
            self._batch = self._run_batched() if usable else {}
        return self._batch

    def _run_batched(self) -> dict[str, float]:
        pgd, k = self.pgd, self.pgd.steps
        right = self.ok.nonzero().squeeze(1)
        base = self.outcome(pgd)
        alive = self.ok & ~base.fooled
        survivors = alive.nonzero().squeeze(1)
        everyone = torch.arange(len(self.y), device=self.y.device)
        variants = {"eps0": Variant(everyone, 0.0, pgd.step)}
        variants |= {f"eps{f}": Variant(right, pgd.eps * f, pgd.step * f) for f in EPS_FACTORS if f != 1.0}
        variants["doubled"] = Variant(survivors, pgd.eps, pgd.step, start=base.x_adv[survivors])
        for r in (1, 2):
            variants[f"restart{r}"] = Variant(survivors, pgd.eps, pgd.step, draw=r)
        if pgd.loss == "ce" and max(k, 20) == k:
            variants["chance"] = Variant(right, 1.0, 0.1, start=self.x[right])
        variants = {name: v for name, v in variants.items() if len(v.which)}
        if not variants:
            return {}
        done = pgd.attack_variants(self.model, self.x, self.y, [*variants.values()], self.starts)
        hit = {name: fooled for name, (_, fooled) in zip(variants, done, strict=True)}
        if "eps0" in variants:  # at eps = 0 every iterate must be x itself
            self._eps0_moved = not torch.equal(done[0][0], self.x)
            hit["eps0"] = hit["eps0"][right]

        def acc(start: torch.Tensor, which: torch.Tensor, fooled: torch.Tensor) -> float:
            robust = start.clone()
            robust[which] &= ~fooled
            return float(robust.float().mean())

        out = {
            name: acc(self.ok, right, hit[name]) for name in hit if name.startswith("eps") or name == "chance"
        }
        if "doubled" in hit:
            out["doubled"] = acc(alive, survivors, hit["doubled"])
            out["restarted"] = acc(alive, survivors, hit["restart1"] | hit["restart2"])
        return out

    def outputs(self) -> float:
        """Logits, determinism, usable input gradients; returns the clean accuracy."""
        with torch.no_grad():
            out1 = self.model(self.x).float()
            out2 = self.model(self.x).float()
        probs = bool(
            (out1 >= -1e-5).all() and (out1 <= 1 + 1e-5).all() and ((out1.sum(1) - 1).abs() < 1e-4).all()
        )
        self.check(
            "logits",
            not probs,
            "the model outputs probabilities (rows in [0,1] summing to 1); attacks need logits",
        )
        diff = float((out1 - out2).abs().max())
        self.check(
            "deterministic",
            bool(torch.allclose(out1, out2, rtol=1e-4, atol=1e-5)),
            f"two forward passes of the same inputs differ by up to {diff:.3g} (randomised? use aa_rand/EOT)",
        )
        grad, _ = input_grad(self.model, self.x, self.y)
        finite = bool(torch.isfinite(grad).all())
        zero = float((grad.flatten(1).abs().sum(1) == 0).float().mean())
        self.check(
            "gradients",
            finite and zero <= self.tol,
            f"input gradients: finite={finite}, {zero:.1%} of examples have an all-zero gradient",
        )
        return float(self.ok.float().mean())

    def strength(self, clean: float) -> float:
        """eps = 0 changes nothing, attacks never help, iterative beats single-step; returns PGD accuracy."""
        tol, k = self.tol, self.pgd.steps
        at_eps0 = self.batched().get("eps0")
        if at_eps0 is None:
            at_eps0 = self.varied(eps=0.0)
        moved = " and moved examples off x" if self._eps0_moved else ""
        self.check(
            "eps0",
            abs(at_eps0 - clean) < 1e-9 and not self._eps0_moved,
            f"PGD at eps=0 gives {at_eps0:.4f}{moved}, clean accuracy is {clean:.4f}",
        )
        fgsm_attack = create_attack("fgsm", eps=self.pgd.eps)
        fgsm, pgd_acc = self.acc(fgsm_attack), self.acc(self.pgd)
        # Accuracy at the last iterate: robust examples plus wrong ones the attack made right.
        fgsm_last, pgd_last = fgsm + self.lifted(fgsm_attack), pgd_acc + self.lifted(self.pgd)
        self.check(
            "adv_le_clean",
            max(fgsm_last, pgd_last) <= clean + tol,
            f"accuracy under attack (FGSM {fgsm_last:.4f}, PGD {pgd_last:.4f}) exceeds clean accuracy "
            f"{clean:.4f}",
        )
        self.check(
            "iterative_ge_fgsm",
            pgd_acc <= fgsm + tol,
            f"PGD-{k} accuracy {pgd_acc:.4f} > FGSM accuracy {fgsm:.4f}: the iterative attack is weaker",
        )
        return pgd_acc

    def eps_curve(self, clean: float, pgd_acc: float) -> None:
        """Accuracy does not rise as eps grows."""
        eps, step = self.pgd.eps, self.pgd.step
        curve = [(0.0, clean)]
        for f in EPS_FACTORS:
            known = pgd_acc if f == 1.0 else self.batched().get(f"eps{f}")
            curve.append((eps * f, self.varied(eps=eps * f, step=step * f) if known is None else known))
        rises = [(a, b) for a, b in itertools.pairwise(curve) if b[1] > a[1] + self.tol]
        self.check(
            "monotone_eps",
            not rises,
            "accuracy rises with eps: "
            + ", ".join(f"{a[1]:.4f} at eps {a[0]:.4g} -> {b[1]:.4f} at {b[0]:.4g}" for a, b in rises),
        )

    def _survivors(self) -> torch.Tensor:
        return self.ok & ~self.outcome(self.pgd).fooled

    def doubled(self) -> float:
        """Accuracy under PGD-2k: PGD-k's survivors continued k steps from their k-th iterate."""
        if "doubled" in self.batched():
            return self.batched()["doubled"]
        alive = self._survivors()
        sel = alive.nonzero().squeeze(1)
        if self.run is not None:  # a user's runner has no iterate to continue from
            return self.varied(steps=2 * self.pgd.steps)
        if not self.floor:  # PGD-2k from PGD-k's starts, every example
            everyone = torch.arange(len(self.y), device=self.y.device)
            pgd_2k = dataclasses.replace(self.pgd, steps=2 * self.pgd.steps)
            fooled = self._attack(pgd_2k, everyone, early_stop=False, key=self.pgd).fooled
            return robust_accuracy(self.ok, ~fooled)
        if len(sel):
            x_adv = self.outcome(self.pgd).x_adv[sel]
            _, hit = self.pgd.continue_from(self.model, self.x[sel], self.y[sel], x_adv)
            alive[sel] = ~hit
        return float(alive.float().mean())

    def restarted(self, restarts: int = 3) -> float:
        """Accuracy under PGD with ``restarts`` starts: further starts only for PGD's survivors."""
        if not self.floor:
            return self.acc(dataclasses.replace(self.pgd, restarts=restarts))
        if restarts == 3 and "restarted" in self.batched():
            return self.batched()["restarted"]
        alive = self._survivors()
        for r in range(1, restarts):
            sel = alive.nonzero().squeeze(1)
            if len(sel):
                alive[sel] = ~self._attack(self.pgd, sel, early_stop=True, draw=r).fooled
        return float(alive.float().mean())

    def convergence(self, pgd_acc: float) -> None:
        """Twice the steps or three restarts change the accuracy by at most the tolerance."""
        k, tol = self.pgd.steps, self.tol
        doubled, restarted = self.doubled(), self.restarted(3)
        self.check(
            "steps_converged",
            abs(doubled - pgd_acc) <= tol and pgd_acc - restarted <= tol,
            f"PGD-{k} {pgd_acc:.4f} vs PGD-{2 * k} {doubled:.4f} vs 3 restarts {restarted:.4f} "
            f"(tolerance {tol}): the evaluation attack has not converged",
        )

    def chance(self, num_classes: int) -> None:
        """An attack that can reach any image leaves no more than chance accuracy."""
        # From x itself (a random start at eps=1 would be a random image and hide zero gradients).
        at_huge = self.batched().get("chance")
        if at_huge is None:
            at_huge = self.acc(PGD(eps=1.0, step=0.1, steps=max(self.pgd.steps, 20), random_start=False))
        chance = 1.0 / num_classes
        self.check(
            "large_eps_chance",
            at_huge <= chance + self.tol,
            f"PGD at eps=1 (any image reachable) leaves accuracy {at_huge:.4f} > chance {chance:.4f}",
        )


def run_checks(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    pgd: PGD,
    tol: float,
    attack_fn: Run | None = None,
    known: list[Known] | None = None,
    seed: int = 0,
    cost_floor: bool = True,
) -> tuple[dict[str, bool | None], list[str]]:
    """Flags and failure messages; ``model`` must already be in eval mode. ``known``: attack outcomes
    on these examples the caller already has (random starts seeded by ``seed``, example i of ``x``
    being example i of the caller's split)."""
    probe = _Probe(model, x, y, pgd, tol, attack_fn, known or [], seed, cost_floor)
    clean = probe.outputs()
    pgd_acc = probe.strength(clean)
    probe.eps_curve(clean, pgd_acc)
    probe.convergence(pgd_acc)
    probe.chance(num_classes)
    return probe.flags, probe.msgs


def masking_suspected(flags: dict[str, Any]) -> bool:
    return any(flags.get(name) is False for name in MASKING_FLAGS)
