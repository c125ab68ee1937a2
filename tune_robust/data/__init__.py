"""Dataset registry, readers for the official formats, and device-resident batching.

Example:
    >>> from tune_robust.data import load_dataset
    >>> ds = load_dataset("digits")
    >>> ds.train_x.shape[1:], ds.num_classes
    ((1, 8, 8), 10)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tune_robust.data._base import DATASETS, DatasetInfo, ImageDataset
from tune_robust.data.augment import random_crop_flip
from tune_robust.errors import DataError

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "ImageDataset",
    "Split",
    "TrialData",
    "batches",
    "load_dataset",
    "prepare_data",
]


def load_dataset(name: str, data_dir: str | Path | None = None, download: bool = False) -> ImageDataset:
    """Read a registered dataset from its official files (``digits`` needs none)."""
    info = DATASETS.get(name)
    path = Path(data_dir).expanduser() if data_dir else None
    if download and path is None and info.needs_data_dir:
        raise DataError(f"--download for {name!r} needs --data-dir to say where the files go")
    ds = info.loader(path, download)
    if ds.shape != info.shape:
        raise DataError(f"{name}: images are {ds.shape}, expected {info.shape}")
    return ds


@dataclass
class Split:
    """One split on the trial's device: uint8 images (N,C,H,W) and int64 labels."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def head(self, n: int) -> Split:
        """The first ``n`` examples (0, or ``n`` >= its length: all of them)."""
        return Split(self.x[:n], self.y[:n]) if 0 < n < len(self) else self


@dataclass
class TrialData:
    train: Split
    val: Split
    test: Split
    num_classes: int
    augment: str


def _split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    n_val = round(n * fraction)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def prepare_data(
    dataset: str,
    device: torch.device,
    data_dir: str | None = None,
    download: bool = False,
    val_fraction: float = 0.0,
    split_seed: int = 0,
    train_limit: int = 0,
    test_limit: int = 0,
    augment: str = "auto",
) -> TrialData:
    """Load ``dataset`` and move train / validation / test splits onto ``device`` as uint8.

    ``val_fraction`` of the training set is held out (same split for every trial with the same
    ``split_seed``): AT sweeps select the best checkpoint on it; NAS stages use it as the architecture
    half. ``train_limit`` / ``test_limit`` keep a deterministic subset (0 = everything).
    """
    ds = load_dataset(dataset, data_dir, download)
    train_idx, val_idx = _split_indices(len(ds.train_y), val_fraction, split_seed)
    if train_limit:
        train_idx = train_idx[:train_limit]
    test_n = min(test_limit, len(ds.test_y)) if test_limit else len(ds.test_y)

    def to_split(x: np.ndarray, y: np.ndarray) -> Split:
        return Split(torch.from_numpy(np.ascontiguousarray(x)).to(device), torch.from_numpy(y).to(device))

    mode = DATASETS.get(dataset).augment if augment == "auto" else augment
    return TrialData(
        train=to_split(ds.train_x[train_idx], ds.train_y[train_idx]),
        val=to_split(ds.train_x[val_idx], ds.train_y[val_idx]),
        test=to_split(ds.test_x[:test_n], ds.test_y[:test_n]),
        num_classes=ds.num_classes,
        augment=mode,
    )


def batches(
    split: Split,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    augment: str = "none",
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` with x float32 in [0, 1] on the split's device, augmented batch-wise."""
    n = len(split)
    if shuffle:
        if generator is None:
            raise ValueError("shuffle=True needs a generator (for determinism)")
        order = torch.randperm(n, generator=generator, device=generator.device).to(split.y.device)
    else:
        order = torch.arange(n, device=split.y.device)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        x = split.x[idx].float().div_(255.0)
        if augment == "crop_flip":
            assert generator is not None
            x = random_crop_flip(x, generator)
        # NHWC strides: oneDNN (CPU) and cuDNN (tensor cores) run convolutions faster on them; the
        # values and the NCHW indexing are unchanged. bench/RESULTS.md has the measured effect.
        yield x.contiguous(memory_format=torch.channels_last), split.y[idx]
