"""Image-folder reader, laid out as Tiny-ImageNet ships (also accepts a plain class-per-folder val/)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tune_robust.data._base import DatasetInfo, ImageDataset, find_dir, read_file, register_dataset
from tune_robust.errors import DataError

_EXTS = {".jpeg", ".jpg", ".png", ".bmp"}
_EXPECTED = (
    "<data-dir>/tiny-imagenet-200/{wnids.txt, train/<class>/images/*.JPEG, "
    "val/images/*.JPEG + val/val_annotations.txt}"
)


def _rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _read_images(paths: list[Path]) -> np.ndarray:
    arrays = [read_file(p, "an image", _rgb) for p in paths]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise DataError(f"image folder: images differ in size ({sorted(shapes)[:3]}...); resize them first")
    return np.stack(arrays).transpose(0, 3, 1, 2).copy()


def _images_under(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.suffix.lower() in _EXTS)


def read_image_folder(root: Path, name: str = "imagefolder") -> ImageDataset:
    """Read ``root/train/<class>/**`` and ``root/val`` (Tiny-ImageNet annotations or class folders)."""
    train_dir, val_dir = root / "train", root / "val"
    if (root / "wnids.txt").exists():
        classes = (root / "wnids.txt").read_text().split()
    else:
        classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    index = {c: i for i, c in enumerate(classes)}
    train_paths, train_labels = [], []
    for c in classes:
        found = _images_under(train_dir / c)
        if not found:
            raise DataError(f"{name}: class folder {train_dir / c} holds no images")
        train_paths += found
        train_labels += [index[c]] * len(found)
    annotations = val_dir / "val_annotations.txt"
    if annotations.exists():
        rows = [line.split("\t") for line in annotations.read_text().splitlines() if line.strip()]
        unknown = {r[1] for r in rows} - set(index)
        if unknown:
            raise DataError(f"{annotations}: classes not among the training classes: {sorted(unknown)[:5]}")
        val_paths = [val_dir / "images" / r[0] for r in rows]
        val_labels = [index[r[1]] for r in rows]
    else:
        val_paths, val_labels = [], []
        for c in classes:
            found = _images_under(val_dir / c) if (val_dir / c).exists() else []
            val_paths += found
            val_labels += [index[c]] * len(found)
    if not val_paths:
        raise DataError(f"{name}: no validation images under {val_dir}; expected {_EXPECTED}")
    return ImageDataset(
        name=name,
        train_x=_read_images(train_paths),
        train_y=np.asarray(train_labels, dtype=np.int64),
        test_x=_read_images(val_paths),
        test_y=np.asarray(val_labels, dtype=np.int64),
        num_classes=len(classes),
    )


def load_tiny_imagenet(data_dir: Path | None, download: bool = False) -> ImageDataset:
    if download and data_dir is not None:
        from tune_robust.data._download import download_dataset

        download_dataset("tiny_imagenet", data_dir)
    root = find_dir(data_dir, "tiny_imagenet", ["tiny-imagenet-200", ""], ("train",), _EXPECTED)
    return read_image_folder(root, "tiny_imagenet")


register_dataset(
    DatasetInfo(
        name="tiny_imagenet",
        loader=load_tiny_imagenet,
        shape=(3, 64, 64),
        num_classes=200,
        augment="crop_flip",
        default_eps=4 / 255,
        expected_files=_EXPECTED,
    )
)
