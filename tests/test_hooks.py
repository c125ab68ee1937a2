"""A one-shot search method added through the training loop's hooks only (tune_robust.models.hooks): a
toy supernet whose hidden layer is one of two candidate ops, drawn before every batch, with its own
trial state and a final-record column, and a toy method that adds its own state and a record section.
Both are registered through the ordinary model and method registries; the loop is not changed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from torch import nn

from tune_robust.config import TrialConfig
from tune_robust.models import MODELS, register_model
from tune_robust.models.hooks import TrainingHooks, Trial
from tune_robust.training import METHODS, Method, register_method
from tune_robust.training.loop import STATE_FILE, Trainer

PROBE_OP = 0  # the fixed candidate the toy supernet is validated and evaluated on


class ToyOneShot(TrainingHooks, nn.Module):
    """Linear stem, one of two candidate ops (ReLU or tanh MLP layer), linear head."""

    state_key = "toy_supernet"

    def __init__(self, num_classes: int, in_channels: int, hidden: int, seed: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Flatten(), nn.LazyLinear(hidden))
        self.ops = nn.ModuleList(
            [nn.Sequential(nn.Linear(hidden, hidden), act) for act in (nn.ReLU(), nn.Tanh())]
        )
        self.head = nn.Linear(hidden, num_classes)
        self.stem(torch.zeros(1, in_channels, 8, 8))  # materialise the lazy layer
        self.rng = torch.Generator().manual_seed(seed)
        self.choice = PROBE_OP
        self.draws: list[int] = []  # every training batch's candidate, in order
        self.weight_steps = 0
        self.epochs_ended = 0
        self.eval_choices: set[int] = set()  # the candidates eval-mode forward passes ran

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            self.eval_choices.add(self.choice)
        return self.head(self.ops[self.choice](self.stem(x)))

    # ---------------------------------------------------------------- hooks

    def before_batch(self, trial: Trial) -> None:
        self.choice = int(torch.randint(2, (1,), generator=self.rng))
        self.draws.append(self.choice)

    def after_weight_step(self, trial: Trial) -> None:
        self.weight_steps += 1

    def after_epoch(self, trial: Trial) -> dict[str, Any]:
        self.epochs_ended += 1
        return {"toy_tanh_share": sum(self.draws) / len(self.draws)}

    def for_evaluation(self, model: nn.Module) -> None:
        assert isinstance(model, ToyOneShot)
        model.choice = PROBE_OP

    def alters_for_evaluation(self) -> bool:
        return True

    def trial_state(self) -> dict[str, Any]:
        return {
            "rng": self.rng.get_state(),
            "draws": list(self.draws),
            "weight_steps": self.weight_steps,
            "epochs_ended": self.epochs_ended,
        }

    def load_trial_state(self, state: Any) -> None:
        self.rng.set_state(state["rng"])
        self.draws = list(state["draws"])
        self.weight_steps = int(state["weight_steps"])
        self.epochs_ended = int(state["epochs_ended"])

    def final_columns(self, trial: Trial) -> dict[str, Any]:
        return {"toy_draws": len(self.draws)}

    def searched_record(self, model: nn.Module) -> dict[str, Any] | None:
        derived = int(sum(self.draws) * 2 > len(self.draws))  # the candidate drawn more often
        return {
            "version": 1,
            "space": "toy",
            "arch": f"op{derived}",
            "model": {"arch": "toy_oneshot", "op": derived},
            "stats": {"toy_derived_op": derived},
        }


@dataclass
class ToyMethod(Method):
    """Clean cross-entropy; counts its batches (its own state) and adds a record section."""

    adversarial = False
    label: str = "toy"
    batches: int = field(default=0, init=False)

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.batches += 1
        logits = model(x)
        return nn.functional.cross_entropy(logits, y), logits

    def record(self) -> dict[str, Any]:
        return {"method": {"label": self.label, "batches": self.batches}}

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches = int(state.get("batches", 0))


@pytest.fixture(scope="module", autouse=True)
def toy_components() -> Iterator[None]:
    def toy_oneshot(
        num_classes: int = 10, in_channels: int = 1, hidden: int = 16, seed: int = 0
    ) -> ToyOneShot:
        return ToyOneShot(num_classes, in_channels, hidden, seed)

    register_model(toy_oneshot)
    register_method("toy_ce")(ToyMethod)
    yield
    MODELS.unregister("toy_oneshot")
    METHODS.unregister("toy_ce")


def toy_cfg(epochs: int = 2) -> TrialConfig:
    return TrialConfig.from_dict(
        {
            "data": {"dataset": "digits", "val_fraction": 0.25, "train_limit": 256, "test_limit": 64},
            "model": {"arch": "toy_oneshot", "hidden": 16, "seed": 3},
            "train": {"epochs": epochs, "batch_size": 32, "lr": 0.05, "schedule": "constant", "seed": 1},
            "method": {"name": "toy_ce"},
            "eval": {"attacks": ("fgsm",), "sanity": False, "metrics": False, "limit": 32},
        }
    )


def toy_model(trainer: Trainer) -> ToyOneShot:
    assert isinstance(trainer.model, ToyOneShot)
    return trainer.model


def test_a_one_shot_method_runs_through_the_hooks_alone(tmp_path):
    torch.set_num_threads(1)
    tr = Trainer(toy_cfg())
    net = toy_model(tr)
    assert tr.hooks == [tr.method, net]  # the method, then the model (no architecture step, no screen)
    history = [tr.run_epoch() for _ in range(2)]
    assert tr.finished
    batches = 2 * tr.steps_per_epoch
    # before_batch drew every batch's candidate (both ran), after_weight_step saw every optimiser step
    assert len(net.draws) == batches == tr.method.batches and set(net.draws) == {0, 1}  # type: ignore[attr-defined]
    assert net.weight_steps == batches == tr.scheduler.last_epoch
    assert net.epochs_ended == 2
    assert [m["toy_tanh_share"] for m in history] == [
        sum(net.draws[:n]) / n for n in (tr.steps_per_epoch, batches)
    ]
    # validation and the best model ran on the fixed probe candidate only; the best model is a copy
    assert net.eval_choices == {PROBE_OP}
    best = tr.best_model()
    assert best is not net and isinstance(best, ToyOneShot) and best.choice == PROBE_OP
    # the final row: the model's column, the searched record with the method's section
    final = tr.final_metrics()
    assert final["toy_draws"] == batches
    record = json.loads(final["arch"])
    assert record["space"] == "toy" and final["toy_derived_op"] == record["model"]["op"]
    assert record["method"] == {"label": "toy", "batches": batches}
    tr.save(tmp_path)
    assert json.loads((tmp_path / "arch.json").read_text()) == record
    state = torch.load(tmp_path / STATE_FILE, weights_only=False)
    assert state["toy_supernet"]["draws"] == net.draws and state["method"] == {"batches": batches}


def test_the_hooks_state_survives_a_restart_and_the_trial_continues_exactly(tmp_path):
    torch.set_num_threads(1)
    straight = Trainer(toy_cfg())
    last_straight = [straight.run_epoch() for _ in range(2)][-1]

    first = Trainer(toy_cfg())
    first.run_epoch()
    first.save(tmp_path)
    resumed = Trainer(toy_cfg())
    assert resumed.load(tmp_path) is None
    net = toy_model(resumed)
    assert net.draws == toy_model(first).draws and net.weight_steps == first.steps_per_epoch
    assert resumed.method.batches == first.steps_per_epoch  # type: ignore[attr-defined]
    last_resumed = resumed.run_epoch()

    # the same draws (the generator's state came back), the same weights and numbers
    assert net.draws == toy_model(straight).draws and net.epochs_ended == 2
    assert last_resumed["train_loss"] == last_straight["train_loss"]
    assert last_resumed["toy_tanh_share"] == last_straight["toy_tanh_share"]
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert resumed.final_metrics()["toy_draws"] == straight.final_metrics()["toy_draws"]


def test_a_part_may_not_take_a_key_of_the_loops_own_state():
    class Clash(TrainingHooks):
        state_key = "epoch"

    tr = Trainer(toy_cfg(epochs=1))
    tr.hooks.append(Clash())
    with pytest.raises(ValueError, match="'epoch' is already taken"):
        tr.state_dict()
