"""scikit-learn's bundled 8x8 digits: the embedded default, needs no download."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from tune_robust.data._base import DatasetInfo, ImageDataset, register_dataset

# The digits set has no official test split; this fixed split seed makes the held-out test set the same
# for every trial, sweep and machine (independent of the trial seed).
_TEST_FRACTION = 0.2
_SPLIT_SEED = 20211206


def _bundled() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 images (0..16, 8 x 8) and labels, read from scikit-learn's own ``digits.csv.gz`` as its
    ``load_digits`` does, without importing scikit-learn (a second of every trial process's start)."""
    spec = importlib.util.find_spec("sklearn")
    folders = list(spec.submodule_search_locations or []) if spec else []
    path = next((Path(f) / "datasets" / "data" / "digits.csv.gz" for f in folders), None)
    if path is None or not path.exists():  # another layout: scikit-learn's loader
        from sklearn.datasets import load_digits as sk_load

        bunch = sk_load()
        return bunch.images, bunch.target
    table = np.loadtxt(path, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)


def load_digits(data_dir: Path | None = None, download: bool = False) -> ImageDataset:
    raw, target = _bundled()
    # Pixel values are integers 0..16; map them onto the usual 0..255 range.
    images = np.rint(raw * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    labels = target.astype(np.int64)
    rng = np.random.default_rng(_SPLIT_SEED)
    test_idx = []
    for c in range(10):  # stratified, so every class is in the test set in proportion
        idx = np.flatnonzero(labels == c)
        test_idx.append(rng.choice(idx, size=round(len(idx) * _TEST_FRACTION), replace=False))
    test_mask = np.zeros(len(labels), dtype=bool)
    test_mask[np.concatenate(test_idx)] = True
    return ImageDataset(
        name="digits",
        train_x=images[~test_mask],
        train_y=labels[~test_mask],
        test_x=images[test_mask],
        test_y=labels[test_mask],
        num_classes=10,
    )


register_dataset(
    DatasetInfo(
        name="digits",
        loader=load_digits,
        shape=(1, 8, 8),
        num_classes=10,
        augment="none",
        default_eps=0.1,
        expected_files="nothing (bundled with scikit-learn)",
        needs_data_dir=False,
    )
)
