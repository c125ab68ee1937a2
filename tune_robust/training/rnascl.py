"""RNAS-CL (Nath et al., Sec. 3): a student learns from a frozen robust teacher's outputs (KL) and,
layer by layer, where its tutor layer looks (attention maps), while Gumbel weights choose each student
layer's tutor among the teacher's layers; no adversarial examples.

- Teacher layers: the output of every convolution of the teacher (forward hooks), the teacher frozen in
  eval mode. Student layers: every block's output (``StudentNet.features``).
- Attention map (Zagoruyko & Komodakis): F(A) = sum over channels of A^2, resized to a common size
  (``attn_size``; 0 = the smallest feature map among student and teacher layers, by adaptive average
  pooling; the paper gives no size) and L2-normalised per example.
- L_Attn = 1/(n_s n_t) sum_i sum_j g_ij ||F(A_s^i) - F(A_t^j)||_2 (Eq. 1; the norm, not its square),
  averaged over the batch; g_i = Gumbel-softmax((v_i + Gumbel(0, 1)) / tau) while searching (the
  paper's "N(0, 1) ... uniform" noise is a misprint for Gumbel(0, 1)), one-hot tutors when training.
- KL(p, q) = sum p log(p / q) with p the student's and q the teacher's softmax, no temperature: as
  printed (the reverse of Hinton's distillation).
- Search loss (Eq. 2): (CE + KL + gamma L_Attn) x n_f, n_f the supernet's expected MACs over its widest
  network's (FBNetV2's differentiable cost; the paper calls it latency); train loss (Eq. 3) without n_f.
- ``trades_beta`` > 0: the CE term is replaced by TRADES' objective (CE + beta KL(clean || adv), the inner
  maximisation from the ``pgd`` training attack): the paper's 20-epoch TRADES finetune.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tune_robust.attacks import Attack
from tune_robust.errors import ConfigError
from tune_robust.models.checkpoint import load_checkpoint
from tune_robust.models.robustbench_zoo import is_reference
from tune_robust.training._base import Method, register_method
from tune_robust.training.trades import kl_rows, pgd_attack_settings, trades_adversary


def attention_maps(features: list[torch.Tensor], size: int) -> torch.Tensor:
    """(N, layers, size * size): each layer's sum over channels of A^2, pooled (or, when smaller,
    bilinearly resized) to size x size, L2-normalised per example."""
    maps = []
    for a in features:
        m = a.float().pow(2).sum(1, keepdim=True)
        if m.shape[-1] >= size:
            m = nn.functional.adaptive_avg_pool2d(m, size)
        else:
            m = nn.functional.interpolate(m, size=(size, size), mode="bilinear", align_corners=False)
        maps.append(nn.functional.normalize(m.flatten(1), dim=1))
    return torch.stack(maps, 1)


def attention_loss(student: torch.Tensor, teacher: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Eq. 1: 1/(n_s n_t) sum_ij g_ij ||S_i - T_j||_2 per example, averaged over the batch
    (student (N, n_s, D), teacher (N, n_t, D), g (n_s, n_t))."""
    dist = torch.cdist(student, teacher.to(student.dtype))  # (N, n_s, n_t)
    n_s, n_t = g.shape
    return (dist * g).sum((1, 2)).mean() / (n_s * n_t)


def student_teacher_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """KL(p, q) = sum p log(p / q), p the student's softmax (as printed in Eq. 2), batch mean."""
    log_p = nn.functional.log_softmax(student_logits.float(), 1)
    log_q = nn.functional.log_softmax(teacher_logits.float(), 1)
    return (log_p.exp() * (log_p - log_q)).sum(1).mean()


class Teacher:
    """A frozen model whose every convolution's output is collected on each forward pass."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.layers = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        if not self.layers:
            raise ConfigError("the RNAS-CL teacher has no convolution layers to tutor from")
        self._out: list[torch.Tensor] = []
        for layer in self.layers:
            layer.register_forward_hook(lambda _m, _i, out: self._out.append(out.detach()))

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        self._out = []
        with torch.no_grad():
            logits = self.model(x)
        return logits.detach(), self._out


def parse_tutors(text: str, n_s: int, n_t: int) -> list[int]:
    try:
        tutors = [int(t) for t in text.split(",")]
    except ValueError:
        raise ConfigError(f"method.tutors {text!r}: comma-separated teacher layer indices") from None
    if len(tutors) != n_s or not all(0 <= t < n_t for t in tutors):
        raise ConfigError(
            f"method.tutors names {len(tutors)} tutors in 0..{max(tutors, default=0)}; this student has "
            f"{n_s} layers and the teacher {n_t} (indices 0..{n_t - 1})"
        )
    return tutors


@register_method("rnascl")
@dataclass
class RNASCL(Method):
    adversarial = False
    # Loss terms: KL to the teacher's outputs, the cross-layer attention term (Section 4.3's ablation:
    # both off = "Standard", kl only = "KL", attention only = "ICC", both = RNAS-CL).
    kl: bool = True
    attention: bool = True
    # gamma_s (search) / gamma_t (training): 1.0 in the paper.
    gamma: float = 1.0
    # Multiply by the supernet's expected cost n_f (Eq. 2, the search); off for the training phase.
    cost: bool = True
    # Tutor Gumbel-softmax temperature, times e^-tau_decay after every epoch (the paper: 5.0, 0.045).
    tau: float = 5.0
    tau_decay: float = 0.045
    # Common attention-map size (0: the smallest feature map among the student's and teacher's layers).
    attn_size: int = 0
    # The teacher: the name of the trial's upstream artifact holding its checkpoint, or a path.
    teacher: str = "teacher"
    # Fixed tutors, one teacher layer index per student layer ("3,5,7,..."): the training phase.
    # Empty: search them (Gumbel weights trained by the architecture step).
    tutors: str = ""
    # > 0: TRADES' objective replaces CE (the paper's TRADES finetune; TRADES' CIFAR beta is 6).
    trades_beta: float = 0.0
    _teacher: Teacher | None = field(default=None, init=False, repr=False)
    _logits: nn.Parameter | None = field(default=None, init=False, repr=False)
    _fixed: torch.Tensor | None = field(default=None, init=False, repr=False)
    _epoch: int = field(default=0, init=False, repr=False)
    _size: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        checks = [
            (self.gamma >= 0, "gamma must be >= 0"),
            (self.tau > 0 and self.tau_decay >= 0, "tau must be > 0 and tau_decay >= 0"),
            (self.attn_size >= 0, "attn_size must be >= 0 (0 = the smallest feature map)"),
            (self.trades_beta >= 0, "trades_beta must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"method 'rnascl': {msg}")
        if is_reference(self.teacher):
            raise ConfigError(
                f"method.teacher={self.teacher}: name a zoo teacher as an upstream input, --set "
                f"upstream.teacher={self.teacher} (method.teacher names that role), so the driver finds "
                f"and checks its weights before Ray starts"
            )
        # the TRADES finetune perturbs its inputs: its attack passes count, its best epoch is robust
        self.adversarial = self.trades_beta > 0  # type: ignore[misc]

    @property
    def needs_teacher(self) -> bool:
        return self.kl or self.attention

    def check_attack(self, attack: Attack) -> None:
        if self.trades_beta > 0:
            pgd_attack_settings(attack, self.name)

    # ------------------------------------------------------------------ set-up

    def setup(self, model: nn.Module, upstream: Mapping[str, str], device: torch.device) -> None:
        if not self.needs_teacher:
            return
        source = upstream.get(self.teacher) or (self.teacher if Path(self.teacher).exists() else None)
        if source is None:
            raise ConfigError(
                f"method 'rnascl' distils from a teacher: no upstream {self.teacher!r} and no such file; "
                f"run the teacher's sweep first (rnascl_teacher, same --results-dir) or set method.teacher "
                f"to a checkpoint path"
            )
        self._teacher = Teacher(load_checkpoint(source, device))
        n_s, n_t = len(_student_layers(model)), len(self._teacher.layers)
        if self.tutors:
            fixed = torch.zeros(n_s, n_t, device=device)
            fixed[torch.arange(n_s), torch.tensor(parse_tutors(self.tutors, n_s, n_t))] = 1.0
            self._fixed = fixed
        elif self.attention:
            self._logits = nn.Parameter(1e-3 * torch.randn(n_s, n_t, device=device))

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self._logits] if self._logits is not None else []

    def tutor_weights(self) -> torch.Tensor:
        if self._fixed is not None:
            return self._fixed
        assert self._logits is not None
        tau = self.tau * math.exp(-self.tau_decay * self._epoch)
        u = torch.rand(self._logits.shape, device=self._logits.device).clamp(1e-10, 1 - 1e-10)
        return torch.softmax((self._logits - torch.log(-torch.log(u))) / tau, dim=1)

    def chosen_tutors(self) -> list[int]:
        if self._fixed is not None:
            return self._fixed.argmax(1).tolist()
        return [] if self._logits is None else self._logits.detach().argmax(1).tolist()

    def record(self) -> dict[str, Any]:
        """What a derived student trains with: this search's loss terms, its teacher and the tutor map
        (the ``method`` section of the training phase)."""
        out: dict[str, Any] = {"kl": self.kl, "attention": self.attention, "gamma": self.gamma}
        if self.needs_teacher:
            out["teacher"] = self.teacher
        tutors = self.chosen_tutors()
        if tutors:
            out["tutors"] = ",".join(map(str, tutors))
        return {"method": out}

    # ------------------------------------------------------------------ the loss

    def _objective(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.trades_beta > 0:
            eps, step, steps = pgd_attack_settings(attack, self.name)
            adv = trades_adversary(model, x, eps, step, steps)
            adv_logits = model(adv)
        _set_keep(model, True)
        try:
            logits = model(x)
            features = list(getattr(model, "features", []))
        finally:
            _set_keep(model, False)
        loss = nn.functional.cross_entropy(logits, y)
        if self.trades_beta > 0:
            loss = loss + self.trades_beta * kl_rows(adv_logits, logits).mean()
        if self._teacher is not None:
            t_logits, t_features = self._teacher(x)
            if self.kl:
                loss = loss + student_teacher_kl(logits, t_logits)
            if self.attention:
                size = self.attn_size or min(f.shape[-1] for f in [*features, *t_features])
                s_maps, t_maps = attention_maps(features, size), attention_maps(t_features, size)
                loss = loss + self.gamma * attention_loss(s_maps, t_maps, self.tutor_weights())
        cost = getattr(model, "cost", None)
        if self.cost and callable(cost):
            loss = loss * cost((int(x.shape[-2]), int(x.shape[-1])))
        return loss, logits

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self._objective(model, x, y, attack)

    def arch_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack) -> torch.Tensor:
        """The search loss (Eq. 2) on the architecture batch: 80/20 of each batch in the paper."""
        return self._objective(model, x, y, attack)[0]

    def end_epoch(
        self, model: nn.Module, probe: tuple[torch.Tensor, torch.Tensor], attack: Attack
    ) -> dict[str, Any]:
        self._epoch += 1
        out: dict[str, Any] = {"search_tutor_tau": self.tau * math.exp(-self.tau_decay * self._epoch)}
        return out

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"epoch": self._epoch}
        if self._logits is not None:
            out["tutor_logits"] = self._logits.detach().clone()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._epoch = int(state.get("epoch", 0))
        if self._logits is not None and "tutor_logits" in state:
            with torch.no_grad():
                self._logits.copy_(state["tutor_logits"])


def _student_layers(model: nn.Module) -> list[nn.Module]:
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList) or not hasattr(model, "keep_features"):
        raise ConfigError(
            "method 'rnascl' needs a student that exposes its layers' outputs (model.arch=rnascl_supernet "
            "or rnascl_student)"
        )
    return list(blocks)


def _set_keep(model: nn.Module, keep: bool) -> None:
    if hasattr(model, "keep_features"):
        setattr(model, "keep_features", keep)  # noqa: B010  (nn.Module's attribute typing)
