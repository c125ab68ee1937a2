"""Batch-wise augmentation on the trial's device (no per-sample Python work)."""

from __future__ import annotations

import torch


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Zero-pad by ``pad``, take a random crop of the original size per image, flip half horizontally.

    This is the seeds' CIFAR/SVHN augmentation (``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip``)
    done for the whole batch with one gather, so it runs where the batch lives.
    """
    b, _, h, w = x.shape
    dev = x.device
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device=dev)
    ox = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device=dev)
    flip = torch.rand(b, 1, generator=generator, device=dev) < 0.5
    col_offsets = torch.arange(w, device=dev).expand(b, w)
    # A flipped crop reads the same window right to left.
    col_offsets = torch.where(flip, w - 1 - col_offsets, col_offsets)
    rows = (oy + torch.arange(h, device=dev)).view(b, 1, h, 1)
    cols = (ox + col_offsets).view(b, 1, 1, w)
    batch_idx = torch.arange(b, device=dev).view(b, 1, 1, 1)
    chan_idx = torch.arange(x.shape[1], device=dev).view(1, -1, 1, 1)
    return padded[batch_idx, chan_idx, rows, cols]


AUGMENTATIONS = {"none", "crop_flip"}
