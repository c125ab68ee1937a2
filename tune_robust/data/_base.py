"""Dataset records and the dataset registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from tune_robust.errors import DataError
from tune_robust.registry import Registry


@dataclass(frozen=True)
class ImageDataset:
    """A whole dataset in memory as uint8 NCHW arrays (pixel range 0..255) and int64 labels.

    Images stay uint8 until a batch is taken, so a full split fits on the trial's device cheaply
    (CIFAR-10 train is 150 MiB) and conversion to float happens batch-wise there.
    """

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
            if x.dtype != np.uint8 or x.ndim != 4:
                raise DataError(f"{self.name} {split} images must be uint8 NCHW, got {x.dtype} {x.shape}")
            if len(x) != len(y):
                raise DataError(f"{self.name} {split}: {len(x)} images but {len(y)} labels")
            if len(y) and (y.min() < 0 or y.max() >= self.num_classes):
                raise DataError(f"{self.name} {split}: labels outside 0..{self.num_classes - 1}")

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self.train_x.shape[1:]
        return int(c), int(h), int(w)


@dataclass(frozen=True)
class DatasetInfo:
    """What the registry knows about a dataset before loading it (cheap metadata + a loader)."""

    name: str
    loader: Callable[[Path | None, bool], ImageDataset]
    shape: tuple[int, int, int]
    num_classes: int
    # Training-time augmentation the seeds use: "crop_flip" (pad-4 crop + h-flip) or "none".
    augment: str
    # Conventional L-inf budget for this dataset in the robustness literature.
    default_eps: float
    # Where the files are expected, for the "missing files" error.
    expected_files: str
    needs_data_dir: bool = True


DATASETS: Registry[DatasetInfo] = Registry("dataset", plugin="datasets")

T = TypeVar("T")


def read_file(path: Path, what: str, reader: Callable[[Path], T]) -> T:
    """``reader(path)``, with any failure of a damaged file (a pickle, gzip or MAT error, a random length
    read as a huge allocation's MemoryError) turned into one DataError naming the file and its checksum
    check. A missing file and the readers' own DataErrors pass through."""
    if not path.exists():
        raise DataError(f"missing {what} file {path}")
    try:
        return reader(path)
    except DataError:
        raise
    except Exception as e:
        from tune_robust.data._download import damaged

        raise damaged(path, what, e) from None


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    DATASETS.register(info.name)(info)
    return info


def find_dir(
    data_dir: Path | None, name: str, candidates: list[str], markers: tuple[str, ...], expected: str
) -> Path:
    """Return the first ``data_dir/<candidate>`` holding one of ``markers``, else raise a DataError."""
    if data_dir is None:
        raise DataError(f"dataset {name!r} needs --data-dir: {expected} (or pass --download)")
    tried = []
    for cand in candidates:
        d = (data_dir / cand) if cand else data_dir
        tried.append(str(d))
        if any((d / m).exists() for m in markers):
            return d
    raise DataError(
        f"dataset {name!r}: no {' or '.join(markers)} found under {data_dir} (looked in {', '.join(tried)}); "
        f"expected {expected}; pass --download on a machine with internet or put the files there"
    )
