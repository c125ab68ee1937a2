"""The trial state on disk: everything a trial needs to continue exactly, in one directory.

- ``state.pt``: the full training state (tune_robust.training.loop.Trainer.state_dict);
- ``model.pt``: the best model with what built it (read by tune_robust.models.checkpoint, where
  "checkpoint" means such a saved model file);
- ``config.json``: the trial config; ``arch.json``: a searched architecture's record.

Each file is written whole or not at all (tune_robust.atomic), so a crash mid-save leaves the previous
complete file. A state file that cannot be read all the same was damaged from outside: it is set aside
as ``state.pt.corrupt`` and the trial starts again from epoch 0 (the other trials are not affected).
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from tune_robust.atomic import write_text, write_with
from tune_robust.models.checkpoint import MODEL_FILE
from tune_robust.models.hooks import TrainingHooks

__all__ = [
    "ARCH_FILE",
    "CONFIG_FILE",
    "STATE_FILE",
    "add_part_states",
    "damaged_file",
    "has_state",
    "load_part_states",
    "read_state",
    "rng_state",
    "set_rng_state",
    "write_state",
]

STATE_FILE = "state.pt"
CONFIG_FILE = "config.json"
# The architecture record of a searched model (tune_robust.models.oneshot.arch_record).
ARCH_FILE = "arch.json"


def has_state(directory: str | Path) -> bool:
    return (Path(directory) / STATE_FILE).exists()


def rng_state(device: torch.device, generator: torch.Generator) -> dict[str, Any]:
    """The random state a trial draws from: torch's global one (CUDA's too), and the batch order's."""
    rng: dict[str, Any] = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return rng


def set_rng_state(rng: Mapping[str, Any], device: torch.device, generator: torch.Generator) -> None:
    torch.set_rng_state(rng["torch"].cpu())
    generator.set_state(rng["generator"].cpu())
    if "cuda" in rng and device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"].cpu(), device)


def add_part_states(state: dict[str, Any], parts: Iterable[TrainingHooks]) -> None:
    """Each part's own state under its ``state_key`` (the method's: "method"), beside the loop's."""
    for part in parts:
        if part.state_key:
            if part.state_key in state:
                raise ValueError(f"{type(part).__name__}.state_key {part.state_key!r} is already taken")
            state[part.state_key] = part.trial_state()


def load_part_states(state: Mapping[str, Any], parts: Iterable[TrainingHooks]) -> None:
    for part in parts:
        if part.state_key and part.state_key in state:
            part.load_trial_state(state[part.state_key])


def _torch_save(obj: Any, dest: Path) -> None:
    write_with(dest, lambda tmp: torch.save(obj, tmp))


def write_state(
    directory: str | Path,
    state: Mapping[str, Any],
    model: Mapping[str, Any],
    config: Mapping[str, Any],
    record: Mapping[str, Any] | None,
) -> None:
    """Write the training ``state``, the ``model`` file's contents, the trial ``config`` and the
    architecture ``record`` (None: no ``arch.json``) into ``directory``, each file whole."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _torch_save(dict(state), directory / STATE_FILE)
    _torch_save(dict(model), directory / MODEL_FILE)
    write_text(directory / CONFIG_FILE, json.dumps(dict(config), indent=1, default=str))
    if record is not None:
        write_text(directory / ARCH_FILE, json.dumps(dict(record), indent=1))


def damaged_file(path: Path, e: Exception) -> bool:
    """Whether ``torch.load`` failed on the file's bytes (truncated, overwritten), not on the machine
    (out of memory, a storage I/O error): a parse error, or a zip archive (torch's format) that does
    not read back whole."""
    if isinstance(e, (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, UnicodeDecodeError)):
        return True
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is not None  # the name of a member whose CRC is wrong
    except zipfile.BadZipFile:
        return True
    except OSError:
        return False


def read_state(directory: str | Path, device: torch.device) -> tuple[dict[str, Any] | None, str | None]:
    """(the training state saved in ``directory``, None), or (None, a warning) when there is none to
    read: missing (a restart after a damaged file was set aside, before the next save), or truncated
    or corrupt (our own writes are whole, so this is damage from outside; the file is set aside as
    ``state.pt.corrupt``). An error of the machine (out of memory, storage I/O) is raised: the file may
    be fine."""
    path = Path(directory) / STATE_FILE
    if not path.exists():
        return None, f"resume: {path} is missing; the trial started again from epoch 0"
    try:
        return torch.load(path, map_location=device, weights_only=False), None
    except Exception as e:
        if not damaged_file(path, e):
            raise
        aside = path.with_name(f"{STATE_FILE}.corrupt")
        os.replace(path, aside)
        why = (str(e).splitlines() or [""])[0][:160]
        return None, (
            f"resume: {path} ({aside.stat().st_size:,} bytes) could not be read ({type(e).__name__}: "
            f"{why}); moved to {aside.name}, the trial started again from epoch 0"
        )
