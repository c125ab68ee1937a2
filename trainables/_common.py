"""Helpers the trainables share (resources, where state lives, what every report carries)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune


def trial_threads() -> int:
    """Torch threads = CPUs Ray gave this trial (so concurrent trials do not oversubscribe cores)."""
    try:
        cpus = tune.get_context().get_trial_resources().required_resources.get("CPU", 1)
    except Exception:  # outside a Tune session (direct call in a test)
        cpus = torch.get_num_threads()
    return max(1, int(cpus))


def trial_state_dir() -> Path:
    """``<trial dir on the sweep's storage>/state`` (the runner requires storage all nodes share)."""
    return Path(tune.get_context().get_storage().trial_fs_path) / "state"


def placement(device: torch.device) -> dict[str, Any]:
    return {
        "device": str(device),
        "hostname": socket.gethostname(),
        "node_id": ray.get_runtime_context().get_node_id() if ray.is_initialized() else None,
    }
