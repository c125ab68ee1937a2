"""scikit-learn's bundled 8x8 digits: the embedded default, needs no download."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tune_robust.data._base import DatasetInfo, ImageDataset, register_dataset

# The digits set has no official test split; this fixed split seed makes the held-out test set the same
# for every trial, sweep and machine (independent of the trial seed).
_TEST_FRACTION = 0.2
_SPLIT_SEED = 20211206


def load_digits(data_dir: Path | None = None, download: bool = False) -> ImageDataset:
    from sklearn.datasets import load_digits as sk_load

    bunch = sk_load()
    # Pixel values are integers 0..16; map them onto the usual 0..255 range.
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
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
