"""The one-shot search lifecycle every supernet search shares (RobNet first; RACL and RNAS-CL reuse it).

- A :class:`SearchSpace` names architectures: it samples one, writes it as text (what a model builder's
  keyword takes and a Parquet column holds), reads it back, and measures it (``stats``).
- A :class:`Supernet` is a model that runs any architecture of its space, chosen per forward pass with
  :meth:`Supernet.use`; in train mode it samples a new sub-network before every training batch
  (:meth:`Supernet.resample`, from its ``before_batch`` hook), so every PGD step of that batch and the
  SGD step attack and train the same sub-network (RobNet Algorithm 1). The sampler's random state and
  the current architecture are part of the model's ``state_dict``, so a trial resumed mid-search samples
  exactly what an uninterrupted one would have.
- :func:`inherit` gives a sampled sub-network's standalone model exactly the supernet's weights for the
  ops it keeps (same parameter names by construction; anything else is an error, never a silent skip).
- :func:`arch_record` is the derived architecture as a plain, versioned record (``arch.json`` in the
  trial directory; the ``arch`` column of trials.parquet) that the space's model builder accepts.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, TypeGuard

import torch
from torch import nn

from tune_robust.errors import ConfigError
from tune_robust.models.hooks import TrainingHooks, Trial

RECORD_VERSION = 1


class SearchSpace(ABC):
    """A family of architectures with a text form and the model builder that takes it."""

    name: str = ""
    # The registered builder and the keyword that takes the architecture's text.
    builder: str = ""
    arch_kwarg: str = ""

    @abstractmethod
    def sample(self, generator: torch.Generator, rule: Mapping[str, Any] | None = None) -> Any:
        """A random architecture (``rule``: the space's sampling options; unknown ones are an error)."""

    @abstractmethod
    def to_text(self, arch: Any) -> str: ...

    @abstractmethod
    def from_text(self, text: str) -> Any: ...

    def stats(self, arch: Any) -> dict[str, float]:
        """Numbers describing ``arch`` (columns of the search's results)."""
        return {}


def arch_record(space: SearchSpace, arch: Any, **extra: Any) -> dict[str, Any]:
    """The versioned record of an architecture: its space, its text, the builder that takes it."""
    return {
        "version": RECORD_VERSION,
        "space": space.name,
        "arch": space.to_text(arch),
        "model": {"arch": space.builder, space.arch_kwarg: space.to_text(arch)},
        "stats": space.stats(arch),
        **extra,
    }


def record_of(model: nn.Module) -> dict[str, Any] | None:
    """The architecture record of a model of a search space: a supernet's derived architecture (None
    for one that derives none, e.g. RobNet's, which samples: it is not one architecture), else the
    model's own record (None for models of no search space)."""
    if isinstance(model, Supernet):
        arch = model.derive()
        return None if arch is None or model.space is None else arch_record(model.space, arch)
    describe = getattr(model, "arch_record", None)
    return describe() if callable(describe) else None


def read_record(record: Mapping[str, Any] | str) -> dict[str, Any]:
    """A record back from its dict or JSON text, refusing versions this code does not know."""
    rec = json.loads(record) if isinstance(record, str) else dict(record)
    if rec.get("version") != RECORD_VERSION:
        raise ConfigError(
            f"architecture record version {rec.get('version')!r}; this tune_robust reads version "
            f"{RECORD_VERSION} (upgrade it)"
        )
    return rec


class Supernet(TrainingHooks):
    """Mixin (before ``nn.Module`` in the bases) of a model that runs any architecture of its space.
    Sampling is off until :meth:`configure_sampling`; then the sampler's state is the module's extra
    state (in its ``state_dict``). It takes part in the training loop through its hooks
    (tune_robust.models.hooks): a new sub-network per batch, its epoch end, the probe sub-network for
    evaluation, its derived architecture's record, and inheritance as an upstream ``init``."""

    space: SearchSpace | None = None
    sampling: bool = False
    rule: dict[str, Any]
    probe_arch: Any
    _rng: torch.Generator

    def configure_sampling(self, space: SearchSpace, seed: int = 0, **rule: Any) -> None:
        """Sample a sub-network from ``space`` before every training batch (with ``rule``)."""
        space.sample(torch.Generator().manual_seed(seed), rule)  # a bad rule fails at build time
        self.space = space
        self.sampling = True
        self.rule = dict(rule)
        self._rng = torch.Generator().manual_seed(seed)
        # The fixed sub-network a supernet is validated and evaluated on (its training samples others):
        # the first draw of the rule from seed + 1, so it tracks the shared weights' progress epoch by
        # epoch on one architecture.
        self.probe_arch = space.sample(torch.Generator().manual_seed(seed + 1), rule)
        self.use(self.probe_arch)

    def use_probe(self) -> None:
        self.use(self.probe_arch)

    def use(self, arch: Any) -> None:
        """Run ``arch`` from now on."""
        raise NotImplementedError

    def derive(self) -> Any:
        """The architecture the search has found so far (None: this supernet derives none; its
        architectures come from sampling and finetuning, as RobNet's)."""
        return None

    # A differentiable search (RACL, RNAS-CL) has architecture parameters (``arch_parameters``; the
    # weight optimiser trains ``weight_parameters``, the rest) with their own optimiser and data split
    # (the trainer's architecture step, configured by the ``arch_step`` section).

    def arch_penalty(self) -> tuple[torch.Tensor | float, dict[str, float]]:
        """A term the architecture step adds to its loss, and numbers to report (RACL: the ADMM
        terms of its Lipschitz constraint)."""
        return 0.0, {}

    def after_arch_step(self) -> None:
        """Called after each architecture step (RACL: the dual update)."""

    def end_epoch(self) -> None:
        """Called after every training epoch (RNAS-CL: the Gumbel temperature's decay)."""

    def resample(self) -> Any:
        """Draw and use the next sub-network (the training loop calls this before each batch)."""
        assert self.space is not None, "configure_sampling first"
        arch = self.space.sample(self._rng, self.rule)
        self.use(arch)
        return arch

    def get_extra_state(self) -> Any:
        return {"rng": self._rng.get_state()} if self.sampling else {}

    def set_extra_state(self, state: Any) -> None:
        if self.sampling and state:
            self._rng.set_state(state["rng"])

    # ------------------------------------------------------------------ the training loop's hooks

    def load_into(self, model: nn.Module) -> None:
        assert isinstance(self, nn.Module)
        inherit(self, model)  # a sampled sub-network's model keeps the supernet's weights of its ops

    def before_batch(self, trial: Trial) -> None:
        if self.sampling:  # this batch's sub-network, for every attack step and the weight step
            self.resample()

    def after_epoch(self, trial: Trial) -> dict[str, Any]:
        self.end_epoch()
        return {}

    def for_evaluation(self, model: nn.Module) -> None:
        if is_sampling(model):  # one fixed sub-network, not a training draw, tracks the shared weights
            model.use_probe()

    def alters_for_evaluation(self) -> bool:
        return self.sampling

    def searched_record(self, model: nn.Module) -> dict[str, Any] | None:
        return record_of(model) if isinstance(model, Supernet) else None


def is_sampling(model: Any) -> TypeGuard[Supernet]:
    return isinstance(model, Supernet) and model.sampling


def inherit(supernet: nn.Module, model: nn.Module) -> int:
    """Copy the supernet's parameters and buffers into ``model`` by name; returns how many tensors were
    copied. Every tensor of ``model`` must exist in the supernet with the same shape (the standalone
    sub-network keeps a subset of the supernet's ops), else a ConfigError names the first mismatch."""
    source = supernet.state_dict()
    target = model.state_dict()
    missing = [k for k in target if k not in source and not k.endswith("_extra_state")]
    if missing:
        raise ConfigError(
            f"the model has {len(missing)} tensors the supernet lacks (first: {missing[0]}): it is not a "
            f"sub-network of that supernet (check the space, channels and layers)"
        )
    wrong = [k for k in target if k in source and source[k].shape != target[k].shape]
    if wrong:
        k = wrong[0]
        raise ConfigError(
            f"supernet tensor {k} has shape {tuple(source[k].shape)}, the model's {tuple(target[k].shape)}: "
            f"check channels and layers"
        )
    kept = {k: source[k] for k in target if not k.endswith("_extra_state")}
    model.load_state_dict(kept, strict=False)
    return len(kept)
