"""SVHN (cropped digits) from the official .mat files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tune_robust.data._base import DatasetInfo, ImageDataset, find_dir, read_file, register_dataset
from tune_robust.errors import DataError

_EXPECTED = "<data-dir>/{train_32x32.mat,test_32x32.mat} (or <data-dir>/svhn/...)"


def _read_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.exists():
        raise DataError(f"svhn: missing {path}; expected {_EXPECTED}")
    return read_file(path, "an SVHN .mat file", _parse_mat)


def _parse_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    mat = loadmat(str(path))
    x = np.asarray(mat["X"], dtype=np.uint8)  # H x W x C x N
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DataError(f"{path}: expected X of shape 32x32x3xN, got {x.shape}")
    y = np.asarray(mat["y"], dtype=np.int64).reshape(-1)
    y[y == 10] = 0  # the official files label the digit 0 as 10
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y


def load_svhn(data_dir: Path | None, download: bool = False) -> ImageDataset:
    if download and data_dir is not None:
        from tune_robust.data._download import download_dataset

        download_dataset("svhn", data_dir)
    d = find_dir(data_dir, "svhn", ["svhn", "SVHN", ""], ("test_32x32.mat",), _EXPECTED)
    train_x, train_y = _read_mat(d / "train_32x32.mat")
    test_x, test_y = _read_mat(d / "test_32x32.mat")
    return ImageDataset("svhn", train_x, train_y, test_x, test_y, num_classes=10)


register_dataset(
    DatasetInfo(
        name="svhn",
        loader=load_svhn,
        shape=(3, 32, 32),
        num_classes=10,
        augment="crop_flip",
        default_eps=8 / 255,
        expected_files=_EXPECTED,
    )
)
