"""The hooks through which the parts of a trial take part in the epoch loop (tune_robust.training.loop).

A trial's parts are its model (when the model is a ``TrainingHooks``, as every one-shot supernet is
through tune_robust.models.oneshot.Supernet; hence this module's place at the models' layer), its
training method (tune_robust.training._base.Method), a differentiable search's architecture step
(tune_robust.training.arch_step) and the screens of its initial weights (tune_robust.training.screen).
Every hook is a no-op by default; a part overrides what it takes part in, so a new search method is a
registered model and/or method that overrides them, with no change to the loop.

The loop calls the parts in one order: the architecture step, the method, the model, the screens (the
architecture step draws its own sub-network before the model draws the batch's, and a method's epoch
end, e.g. Fast's probe, sees the model before its own epoch end changes it). Per trial:

- ``load_into``: an upstream ``init`` model gives the trial's model its first weights (once, on the
  loaded upstream model, before the parts are collected);
- ``arch_parameters`` / ``weight_parameters``: what the architecture step and the weight optimiser
  train;
- ``screen``: once, before the first epoch, for a part with ``screens`` set;
- per training batch ``before_batch``, per optimiser step ``after_weight_step``, per epoch
  ``after_epoch`` (epoch metrics);
- ``for_evaluation``: before validation and on the best model's copy (``alters_for_evaluation``: it
  changes what is evaluated, so the best model is always a copy);
- ``state_key`` / ``trial_state`` / ``load_trial_state``: the part's own state in the trial state;
- ``final_columns``, ``searched_record`` and ``record_sections``: the final row and the architecture
  record (``arch.json``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
from torch import nn

if TYPE_CHECKING:
    from tune_robust.attacks import Attack
    from tune_robust.data import TrialData

__all__ = ["TrainingHooks", "Trial", "load_init"]


class Trial(Protocol):
    """What a hook sees of the running trial (tune_robust.training.loop.Trainer)."""

    @property
    def model(self) -> nn.Module: ...

    @property
    def data(self) -> TrialData: ...

    @property
    def train_attack(self) -> Attack: ...

    @property
    def probe(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed, un-augmented training batch (for parts that watch their own robustness)."""
        ...

    @property
    def epoch(self) -> int:
        """Completed epochs (during an epoch: the ones before it)."""
        ...


class TrainingHooks:
    """A part of a trial that the epoch loop calls; every hook does nothing unless overridden."""

    # The key of this part's own state in the trial state (state.pt); "" keeps none (a model's state
    # is its state_dict, which the trial state holds anyway). Must differ from the loop's own keys.
    state_key: ClassVar[str] = ""
    # Whether ``screen`` checks the initial weights before the first epoch.
    screens: ClassVar[bool] = False

    # ------------------------------------------------------------------ parameters

    def arch_parameters(self) -> list[nn.Parameter]:
        """Architecture parameters this part owns ([]: none), trained by the architecture step."""
        return []

    def weight_parameters(self) -> list[nn.Parameter]:
        """(A model's hook) what the weight optimiser trains: every parameter but the architecture's."""
        if not isinstance(self, nn.Module):
            raise TypeError(f"{type(self).__name__} is no model: it has no weights")
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def load_into(self, model: nn.Module) -> None:
        """(A model's hook, called on the upstream ``init`` model) give ``model`` its first weights:
        by default all of this model's, as the same architecture takes them."""
        if not isinstance(self, nn.Module):
            raise TypeError(f"{type(self).__name__} is no model: it has no weights to give")
        model.load_state_dict(self.state_dict())

    # ------------------------------------------------------------------ training

    def screen(self, trial: Trial) -> dict[str, Any]:
        """(Parts with ``screens``) check the initial weights before the first epoch; the columns it
        returns are kept with the trial. ``"stop"``: the reason to end the trial here;
        ``"val_attack_passes"``: its attack's forward-backward passes (validation cost)."""
        return {}

    def before_batch(self, trial: Trial) -> None:
        """Before each training batch is attacked and trained on."""

    def after_weight_step(self, trial: Trial) -> None:
        """After each optimiser step of the weights (a method that replays a batch steps more than once
        per batch)."""

    def after_epoch(self, trial: Trial) -> dict[str, Any]:
        """After each training epoch (``trial.epoch`` counts it): extra epoch metrics. ``"stop"``: the
        reason to end training; ``"attack_passes"``: attack passes per example to add to the epoch's
        training cost."""
        return {}

    # ------------------------------------------------------------------ evaluation

    def for_evaluation(self, model: nn.Module) -> None:
        """Put ``model`` (the trial's, or a copy holding its best weights) in the form it is validated
        and evaluated in (a sampling supernet: its fixed probe sub-network)."""

    def alters_for_evaluation(self) -> bool:
        """Whether ``for_evaluation`` changes the model (then the best model is always a copy)."""
        return False

    # ------------------------------------------------------------------ trial state

    def trial_state(self) -> Any:
        """This part's state under ``state_key`` (what a resumed trial needs to continue exactly)."""
        return None

    def load_trial_state(self, state: Any) -> None:
        """Restore what ``trial_state`` returned."""

    # ------------------------------------------------------------------ the final record

    def final_columns(self, trial: Trial) -> dict[str, Any]:
        """Extra columns of the trial's final row."""
        return {}

    def searched_record(self, model: nn.Module) -> dict[str, Any] | None:
        """The architecture record of ``model`` (the best model) when this part searched it (None:
        it did not; the model's own record, if it has one, is used)."""
        return None

    def record_sections(self) -> dict[str, Any]:
        """Sections a searched architecture's record carries for the training that follows the search
        (RNAS-CL's method: the tutor map)."""
        return {}


def load_init(source: nn.Module, model: nn.Module) -> None:
    """Give ``model`` the weights of ``source`` (an upstream ``init`` model): through the source's
    hook when it has one (a supernet's sub-network inherits), else all of them."""
    if isinstance(source, TrainingHooks):
        source.load_into(model)
    else:
        model.load_state_dict(source.state_dict())
