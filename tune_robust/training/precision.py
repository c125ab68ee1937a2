"""Where a trial trains and in which precision (``train.device``, ``train.amp``).

Mixed precision covers the training passes only (the attack's and the update's forward passes):
bf16 autocast on CUDA and on CPUs with native bf16 kernels, fp16 autocast with loss scaling on CUDA.
Backward passes and optimiser steps run outside autocast on fp32 weights, and evaluation always runs in
fp32 (tune_robust.evaluation).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tune_robust.errors import ConfigError

__all__ = ["Precision", "check_amp", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU has bf16 instructions (x86: AVX512-BF16 or AMX-BF16; ARM: BF16), which oneDNN's
    bf16 kernels need: read from the flags the kernel lists in /proc/cpuinfo (False where there is none:
    such a machine is then refused bf16 rather than given slow emulated kernels)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.partition(":")[2].split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def check_amp(amp: str, device: torch.device) -> None:
    """bf16 autocast runs on CUDA and on CPUs with native bf16 kernels; fp16 (loss scaling) on CUDA."""
    if amp == "off" or device.type == "cuda":
        return
    if amp == "fp16" or device.type != "cpu":
        raise ConfigError(f"train.amp={amp} needs a CUDA device; this trial runs on {device}")
    if not native_bf16():
        raise ConfigError(
            "train.amp=bf16 on a CPU needs native bf16 kernels (AVX512-BF16 or AMX), which this CPU lacks "
            "(emulated bf16 is slower than fp32): use train.amp=off"
        )


class Precision:
    """``train.amp`` (off, bf16, fp16) on ``device``: the training passes' autocast and the optimiser
    step (with fp16's loss scaling, whose scale is part of the trial state)."""

    def __init__(self, amp: str, device: torch.device) -> None:
        check_amp(amp, device)
        self.device = device
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        # Loss scaling for fp16 only; with enabled=False every call passes straight through.
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, grad_clip: float) -> None:
        """Backward (outside autocast, scaled for fp16), clip the gradient norm of the optimiser's
        parameters to ``grad_clip`` (0: no clipping), one optimiser step."""
        with torch.autocast(device_type=self.device.type, enabled=False):
            optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if grad_clip > 0:
                self.scaler.unscale_(optimizer)
                # the optimiser's parameters only (a search's architecture parameters are not weights)
                weights = [p for group in optimizer.param_groups for p in group["params"]]
                nn.utils.clip_grad_norm_(weights, grad_clip)
            self.scaler.step(optimizer)
            self.scaler.update()
