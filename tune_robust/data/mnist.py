"""MNIST from the official idx files (gzip or raw)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from tune_robust.data._base import DatasetInfo, ImageDataset, find_dir, read_file, register_dataset
from tune_robust.errors import DataError

_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
_EXPECTED = "<data-dir>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]"


def read_idx(path: Path) -> np.ndarray:
    """Read one idx file; the header's dimensions are trusted (a subset file carries its true count)."""
    return read_file(path, "an MNIST idx file", _read_idx)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte idx file (bad magic number)")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    count = int(np.prod(dims))
    if len(raw) - offset < count:
        raise DataError(f"{path}: header says {dims} but the file holds {len(raw) - offset} bytes")
    return np.frombuffer(raw, dtype=np.uint8, count=count, offset=offset).reshape(dims)


def _locate(d: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (d / name).exists():
            return d / name
    raise DataError(f"mnist: missing {stem}[.gz] in {d}; expected {_EXPECTED}")


def load_mnist(data_dir: Path | None, download: bool = False) -> ImageDataset:
    if download and data_dir is not None:
        from tune_robust.data._download import download_dataset

        download_dataset("mnist", data_dir)
    d = find_dir(
        data_dir,
        "mnist",
        ["MNIST/raw", "raw", ""],
        ("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte"),
        _EXPECTED,
    )
    arrays = {k: read_idx(_locate(d, stem)) for k, stem in _FILES.items()}
    return ImageDataset(
        name="mnist",
        train_x=arrays["train_x"][:, None],
        train_y=arrays["train_y"].astype(np.int64),
        test_x=arrays["test_x"][:, None],
        test_y=arrays["test_y"].astype(np.int64),
        num_classes=10,
    )


register_dataset(
    DatasetInfo(
        name="mnist",
        loader=load_mnist,
        shape=(1, 28, 28),
        num_classes=10,
        augment="none",
        default_eps=0.3,
        expected_files=_EXPECTED,
    )
)
