"""CIFAR-10 and CIFAR-100 from the official python pickle files."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from tune_robust.data._base import DatasetInfo, ImageDataset, find_dir, read_file, register_dataset
from tune_robust.errors import DataError


def _read_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    return read_file(path, "a CIFAR python batch", lambda p: _unpickle(p, label_key))


def _unpickle(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    data = np.asarray(entry["data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: expected N x 3072 uint8 rows, got {data.shape}")
    labels = np.asarray(entry[label_key], dtype=np.int64)
    if labels.shape != (data.shape[0],):
        raise DataError(f"{path}: {data.shape[0]} images but {labels.shape} labels")
    return data.reshape(-1, 3, 32, 32), labels


def _load(
    name: str, data_dir: Path | None, download: bool, folder: str, train: list[str], test: str, label_key: str
) -> ImageDataset:
    expected = f"<data-dir>/{folder}/{{{','.join(train)},{test}}}"
    if download and data_dir is not None:
        from tune_robust.data._download import download_dataset

        download_dataset(name, data_dir)
    d = find_dir(data_dir, name, [folder, ""], (test,), expected)
    parts = [_read_batch(d / b, label_key) for b in train]
    test_x, test_y = _read_batch(d / test, label_key)
    return ImageDataset(
        name=name,
        train_x=np.concatenate([p[0] for p in parts]),
        train_y=np.concatenate([p[1] for p in parts]),
        test_x=test_x,
        test_y=test_y,
        num_classes=100 if name == "cifar100" else 10,
    )


CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


def load_cifar10(data_dir: Path | None, download: bool = False) -> ImageDataset:
    return _load("cifar10", data_dir, download, "cifar-10-batches-py", CIFAR10_TRAIN, "test_batch", "labels")


def _checked(split: str, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``images`` as uint8 N x 3 x 32 x 32 and ``labels`` as N class indices 0..9, or one DataError."""
    x, y = np.asarray(images), np.asarray(labels)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (3, 32, 32):
        raise DataError(
            f"write_cifar10: {split} images must be uint8 N x 3 x 32 x 32 (0..255, channels first), got "
            f"{x.dtype} {x.shape}; scale float images with (x * 255).round().astype(np.uint8)"
        )
    if (
        y.shape != (len(x),)
        or not np.issubdtype(y.dtype, np.integer)
        or (len(y) and not 0 <= y.min() <= y.max() < 10)
    ):
        raise DataError(
            f"write_cifar10: {split} labels must be {len(x)} integers in 0..9 (one per image), got {y.dtype} "
            f"{y.shape}" + (f" from {y.min()} to {y.max()}" if y.size and y.ndim == 1 else "")
        )
    return x, y


def write_cifar10(
    root: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]
) -> Path:
    """Write images (uint8 N x 3 x 32 x 32) and labels (0..9) in the official layout ``load_cifar10``
    reads (``<root>/cifar-10-batches-py``: the training set split over five batches, then ``test_batch``),
    e.g. a subset of CIFAR-10 or data of one's own; returns that folder. Both splits are checked before
    anything is written, and a folder that already holds batches is refused."""
    train_x, train_y = _checked("train", *train)
    test_x, test_y = _checked("test", *test)
    d = Path(root) / "cifar-10-batches-py"
    if d.exists() and any(d.iterdir()):
        raise DataError(f"write_cifar10: {d} is not empty; write to a new root")
    d.mkdir(parents=True, exist_ok=True)
    parts = zip(np.array_split(train_x, 5), np.array_split(train_y, 5), strict=True)
    for name, (x, y) in [*zip(CIFAR10_TRAIN, parts, strict=True), ("test_batch", (test_x, test_y))]:
        entry = {"data": x.reshape(len(x), 3072), "labels": y.tolist(), "batch_label": name}
        with open(d / name, "wb") as f:
            pickle.dump(entry, f)
    return d


def load_cifar100(data_dir: Path | None, download: bool = False) -> ImageDataset:
    return _load("cifar100", data_dir, download, "cifar-100-python", ["train"], "test", "fine_labels")


register_dataset(
    DatasetInfo(
        name="cifar10",
        loader=load_cifar10,
        shape=(3, 32, 32),
        num_classes=10,
        augment="crop_flip",
        default_eps=8 / 255,
        expected_files="<data-dir>/cifar-10-batches-py/{data_batch_1..5,test_batch}",
    )
)
register_dataset(
    DatasetInfo(
        name="cifar100",
        loader=load_cifar100,
        shape=(3, 32, 32),
        num_classes=100,
        augment="crop_flip",
        default_eps=8 / 255,
        expected_files="<data-dir>/cifar-100-python/{train,test}",
    )
)
