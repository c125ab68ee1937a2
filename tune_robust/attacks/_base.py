"""Attack interface and registry.

An attack is a frozen dataclass of its settings (validated on construction, so a bad eps fails before
any trial starts) with one method: ``perturb(model, x, y) -> x_adv``. Attacks never change the model's
parameters, gradients, buffers or mode; callers choose the mode (evaluation always uses eval mode).
Inputs and outputs are images in [0, 1]; the model must return logits.

Evaluation calls ``attack(model, x, y, starts, early_stop)`` instead, which also says which examples
were misclassified at *any* iterate (an iterate is a valid adversarial example, so one that fools the
model counts: AutoAttack's and RobustBench's rule). With ``early_stop`` an example leaves the batch at
its first misclassified iterate and keeps it, so robust accuracy costs only what the survivors need;
``Starts`` makes each example's random start a function of its index, so attacking any subset of the
examples, in any batch, gives each the start it would get among all of them.
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal, TypeVar

import torch
from torch import nn

from tune_robust.coerce import ComponentSpec, coerce, coerce_kwargs, resolve_eps
from tune_robust.errors import ConfigError
from tune_robust.registry import Registry

Loss = Literal["ce", "margin", "clipped_margin"]
Norm = Literal["linf", "l2"]


class Attack(ABC):
    """Base class: subclasses are ``@dataclass(frozen=True)`` and registered with ``@register_attack``."""

    name: str = ""
    # How much the evaluation suite prefers this attack's examples as x' of the empirical Lipschitz
    # estimate (0 = never, e.g. a transfer attack's, which are not crafted on the evaluated model; among
    # L-inf attacks the highest wins, then the first listed): PGD-type 2, single-direction ones 1.
    lipschitz_preference: ClassVar[int] = 0
    # True: perturb_with_notes reports the attack's own failed checks (AutoAttack's), which the suite
    # turns into the sanity_autoattack flag.
    self_checking: ClassVar[bool] = False

    @abstractmethod
    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Return adversarial inputs in [0, 1] within the threat model around ``x``."""

    def perturb_with_notes(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, list[str]]:
        """``perturb`` plus warnings the attack itself raised (AutoAttack's checks); none by default."""
        return self.perturb(model, x, y), []

    def summarize_notes(self, notes: Sequence[BatchNote], evaluated: int) -> list[str]:
        """One line per kind of warning over a whole evaluation of ``evaluated`` examples (the batches'
        notes differ in their numbers only): the first batch's text, and in how many batches it came."""
        groups: dict[str, list[BatchNote]] = {}
        for note in notes:
            groups.setdefault(re.sub(r"\d+(\.\d+)?", "#", note.text), []).append(note)
        return [
            group[0].text + (f" (in {len(group)} batches)" if len(group) > 1 else "")
            for group in groups.values()
        ]

    def attack(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        starts: Starts | None = None,
        early_stop: bool = False,
    ) -> Outcome:
        """The evaluation entry point (see the module docstring): the class's own ``evaluate`` loop
        (iterative attacks count every iterate and stop early; ``starts`` keyed to this attack), unless
        a subclass replaced ``perturb``/``perturb_with_notes`` below it; else ``perturb_with_notes``,
        an example being fooled when its returned example is misclassified."""
        owner = next(c for c in type(self).__mro__ if "evaluate" in c.__dict__)  # Attack at the latest
        if owner is not Attack and self._replaced_perturb(owner):
            return Attack.evaluate(self, model, x, y, starts, early_stop)
        return self.evaluate(model, x, y, None if starts is None else starts.keyed(self), early_stop)

    def evaluate(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, starts: Starts | None, early_stop: bool
    ) -> Outcome:
        """An attack's own evaluation loop (``attack`` calls it). This default runs
        ``perturb_with_notes``; an example is fooled when its returned example is misclassified."""
        x_adv, notes = self.perturb_with_notes(model, x, y)
        with torch.no_grad():
            fooled = model(x_adv.float()).argmax(1) != y
        return Outcome(x_adv, fooled, notes)

    def _replaced_perturb(self, owner: type[Attack]) -> bool:
        """A subclass of ``owner`` replaced ``perturb`` or ``perturb_with_notes``: ``owner``'s loop
        would bypass it."""
        cls = type(self)
        return cls.perturb is not owner.perturb or cls.perturb_with_notes is not owner.perturb_with_notes

    @property
    def gradient_steps(self) -> int:
        """Forward-backward passes per example (for cost accounting)."""
        return 0

    def config(self) -> dict[str, Any]:
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}

    def describe(self) -> str:
        """Short label for result columns, e.g. ``pgd20-linf-eps0.0314-step0.0031``."""
        return self.name


@dataclasses.dataclass(frozen=True)
class BatchNote:
    """A warning an attack raised on one batch of an evaluation: its text, the batch's index and the
    number of examples attacked in it."""

    text: str
    batch: int
    attacked: int


@dataclasses.dataclass
class Outcome:
    """An attack on a batch: the examples it returns (the last iterate; with early stopping, the first
    misclassified one), which examples some iterate misclassified, and the attack's own warnings."""

    x_adv: torch.Tensor
    fooled: torch.Tensor
    notes: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Starts:
    """Per-example random draws: draw ``k`` of the example with index ``i`` depends only on
    ``(seed, stream, i, offset + k)``. Restart ``k`` of an attack uses draw ``k``; each attack draws
    from its own stream (``keyed``: its settings but the number of restarts), so two attacks of a suite
    start from independent points while a restart, a rerun or a subset of examples repeats them."""

    ids: torch.Tensor  # int64 indices of the batch's examples in the evaluated split
    seed: int = 0
    offset: int = 0
    stream: int | None = None  # None until an attack keys it

    @classmethod
    def of_batch(cls, first: int, n: int, seed: int = 0) -> Starts:
        return cls(torch.arange(first, first + n), seed)

    def subset(self, which: torch.Tensor) -> Starts:
        """The draws of the examples ``which`` (a boolean mask or indices) selects."""
        return dataclasses.replace(self, ids=self.ids[which.cpu()])

    def keyed(self, attack: Attack) -> Starts:
        """The stream of ``attack`` (its class and settings, restarts aside), unless already keyed."""
        if self.stream is not None:
            return self
        settings = sorted((k, v) for k, v in attack.config().items() if k != "restarts")
        tag = f"{type(attack).__name__}{settings}".encode()
        return dataclasses.replace(self, stream=zlib.crc32(tag))

    def shifted(self, k: int) -> Starts:
        """The same examples' draws from ``k`` on (restart ``k`` of a multi-start attack)."""
        return dataclasses.replace(self, offset=self.offset + k)

    def _draw(self, like: torch.Tensor, draw: int, fill: Callable[..., torch.Tensor]) -> torch.Tensor:
        out = torch.empty(like.shape, dtype=torch.float32)
        gen = torch.Generator()
        for row, i in enumerate(self.ids.tolist()):
            key = (self.seed, self.stream or 0, i, self.offset + draw)
            gen.manual_seed(hash(key) & 0x7FFF_FFFF_FFFF_FFFF)  # (tuples of ints hash the same everywhere)
            fill(out[row], generator=gen)
        return out.to(device=like.device, dtype=like.dtype)

    def uniform(self, like: torch.Tensor, draw: int = 0) -> torch.Tensor:
        """U(0, 1) in ``like``'s shape, row i for example ``ids[i]``."""
        return self._draw(like, draw, lambda t, generator: t.uniform_(0, 1, generator=generator))

    def normal(self, like: torch.Tensor, draw: int = 0) -> torch.Tensor:
        """N(0, 1) in ``like``'s shape, row i for example ``ids[i]``."""
        return self._draw(like, draw, lambda t, generator: t.normal_(0, 1, generator=generator))


Aux = dict[str, torch.Tensor]
GradFn = Callable[[torch.Tensor, torch.Tensor, Aux, int], tuple[torch.Tensor, torch.Tensor]]
StepFn = Callable[[torch.Tensor, torch.Tensor, Aux, int], tuple[torch.Tensor, Aux]]


def ascend(
    model: nn.Module,
    adv: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    grad_fn: GradFn,
    step_fn: StepFn,
    aux: Aux,
    early_stop: bool,
    start_valid: torch.Tensor | None = None,
    score_last: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``steps`` iterations of an ascent attack from ``adv``: ``grad_fn(adv, y, aux, t)`` gives the
    input gradient and the logits at ``adv``, ``step_fn(adv, grad, aux, t)`` the next iterate and
    per-example state (``aux``: the box, momentum, ...: rows follow the examples).

    Returns the examples (the last iterate, or with ``early_stop`` the first misclassified one) and
    which examples any iterate misclassified, the last included (unless not ``score_last``: then the
    last iterate is not scored, and no forward pass is spent on it); the start counts only where
    ``start_valid`` (an unclipped random start may lie outside [0, 1]). With ``early_stop`` an example leaves
    the batch once misclassified; the others' computation is unchanged (the model must be in eval mode,
    so an example's output does not depend on the rest of its batch)."""
    out = adv.detach().clone()
    fooled = torch.zeros(y.shape, dtype=torch.bool, device=y.device)
    idx = torch.arange(len(y), device=y.device)
    for t in range(steps):
        grad, logits = grad_fn(adv, y, aux, t)
        wrong = logits.argmax(1) != y
        if t == 0 and start_valid is not None:
            wrong &= start_valid
        fooled[idx] |= wrong
        if early_stop and bool(wrong.any()):
            out[idx[wrong]] = adv[wrong].detach()
            keep = ~wrong
            idx, adv, y, grad = idx[keep], adv[keep], y[keep], grad[keep]
            aux = {k: v[keep] for k, v in aux.items()}
            if not len(idx):
                return out, fooled
        adv, aux = step_fn(adv.detach(), grad, aux, t)
    if len(idx) and score_last:  # (off: a training attack, whose model may be in train mode)
        with torch.no_grad():
            fooled[idx] |= model(adv).argmax(1) != y
    out[idx] = adv.detach()
    return out, fooled


ATTACKS: Registry[type[Attack]] = Registry("attack", plugin="attacks")
_A = TypeVar("_A", bound=type[Attack])


def register_attack(name: str) -> Callable[[_A], _A]:
    return ATTACKS.register_class(name)


def create_attack(name: str, **kwargs: Any) -> Attack:
    cls = ATTACKS.get(name)
    return cls(**coerce_kwargs(cls, kwargs, where=f"attack {name!r}"))


def attack_spec(values: Mapping[str, Any], auto_eps: float) -> ComponentSpec:
    """Validate an attack section (``{"name": ..., <options>}``). ``eps: "auto"`` is ``auto_eps`` (the
    dataset's conventional budget: 8/255 for CIFAR/SVHN, 0.3 for MNIST); other float options may be
    written relative to eps (``"eps/10"``)."""
    values = dict(values)
    name = str(values.pop("name", "none"))
    if values.get("eps") == "auto":
        values["eps"] = auto_eps
    if "eps" in values:
        eps = coerce(values["eps"], float, f"attack {name!r} option 'eps'")
        values = {k: resolve_eps(v, eps, f"attack {name!r} option {k!r}") for k, v in values.items()}
    attack = create_attack(name, **values)  # validates names, types and ranges (e.g. eps >= 0)
    return ComponentSpec(name, attack.config())


def check_eps(eps: float, what: str = "eps") -> None:
    if not eps >= 0:  # also rejects NaN
        raise ConfigError(f"attack {what} must be >= 0, got {eps}")


def check_steps(steps: int, what: str = "steps") -> None:
    if steps < 1:
        raise ConfigError(f"attack {what} must be >= 1, got {steps}")


def attack_loss(logits: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-example loss an attack maximises: cross-entropy, the CW margin ``max_{j != y} z_j - z_y``
    (positive once the example is misclassified), or that margin clipped at 0 (``-relu(z_y - z_j)``:
    no gradient once misclassified, so the example stays there; Huang et al.'s and TRADES' CW-inf)."""
    logits = logits.float()
    if loss == "ce":
        return nn.functional.cross_entropy(logits, y, reduction="none")
    if loss in ("margin", "clipped_margin"):
        true = logits.gather(1, y[:, None]).squeeze(1)
        others = logits.scatter(1, y[:, None], -float("inf"))
        margin = others.amax(1) - true
        return margin.clamp(max=0.0) if loss == "clipped_margin" else margin
    raise ConfigError(f"unknown attack loss {loss!r}; use 'ce', 'margin' or 'clipped_margin'")


def input_grad(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "ce"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the summed attack loss w.r.t. the input only (parameter .grad untouched)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        total = attack_loss(logits, y, loss).sum()
        (grad,) = torch.autograd.grad(total, x)
    return grad, logits.detach()


def in_ball(adv: torch.Tensor, x0: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Per example: ``adv`` lies in the threat model (the eps-ball around ``x0`` and the [0, 1] box)."""
    box = ((adv >= 0) & (adv <= 1)).flatten(1).all(1)
    d = (adv - x0).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(p=2, dim=1)
    return box & (size <= eps * (1 + 1e-6) + 1e-7)


def _per_example_norm(t: torch.Tensor, p: float) -> torch.Tensor:
    return t.flatten(1).norm(p=p, dim=1).view(-1, *([1] * (t.ndim - 1)))


def random_start(
    x0: torch.Tensor, eps: float, norm: str, clip: bool = True, starts: Starts | None = None, draw: int = 0
) -> torch.Tensor:
    """A uniform point of the eps-ball around ``x0`` (L-inf), or a uniform direction with a uniform
    radius (L2), clipped to [0, 1] when ``clip``. Drawn from ``starts`` (draw ``draw``) when given,
    else from the global generator.

    Not clipping is Wong et al.'s Fast AT rule (the gradient is taken at ``x + delta`` as drawn; only
    the final example is clipped). It matters on MNIST, where most pixels are 0 or 1: a clipped start
    leaves half of each such pixel's draws at the boundary, and FGSM training from it collapses
    (bench/RESULTS.md, "Fast AT on MNIST")."""
    if norm == "linf":
        if starts is None:
            start = x0 + torch.empty_like(x0).uniform_(-eps, eps)
        else:
            start = x0 + starts.uniform(x0, draw).mul_(2 * eps).sub_(eps)
    else:
        d = torch.randn_like(x0) if starts is None else starts.normal(x0, draw)
        d = d / _per_example_norm(d, 2).clamp_min(1e-12)
        shape = (x0.shape[0], *([1] * (x0.ndim - 1)))
        if starts is None:
            r = torch.rand(*shape, device=x0.device, dtype=x0.dtype)
        else:  # the radius: a separate stream of the same example
            r = starts.uniform(x0.new_empty(shape), draw + 1_000_003)
        start = x0 + d * r * eps
    return start.clamp_(0, 1) if clip else start


def ascent_step(adv: torch.Tensor, grad: torch.Tensor, step: float, norm: str) -> torch.Tensor:
    """Steepest ascent step of size ``step`` under the norm (sign for L-inf, unit L2 direction)."""
    if norm == "linf":
        return adv + step * grad.sign()
    return adv + step * grad / _per_example_norm(grad, 2).clamp_min(1e-12)


def project(adv: torch.Tensor, x0: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project onto the eps-ball around ``x0`` intersected with the [0, 1] box."""
    if norm == "linf":
        adv = torch.min(torch.max(adv, x0 - eps), x0 + eps)
    else:
        delta = adv - x0
        scale = (eps / _per_example_norm(delta, 2).clamp_min(1e-12)).clamp(max=1.0)
        adv = x0 + delta * scale
    # Clipping to the box only moves coordinates towards x0 (itself in the box): the norm can only shrink.
    return adv.clamp(0, 1)


@register_attack("none")
@dataclasses.dataclass(frozen=True)
class NoAttack(Attack):
    """Clean inputs (accuracy without an attack)."""

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x

    def evaluate(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, starts: Starts | None, early_stop: bool
    ) -> Outcome:
        return Outcome(x, torch.zeros(y.shape, dtype=torch.bool, device=y.device))
