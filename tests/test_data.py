import gzip
import hashlib
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from tune_robust.data import DATASETS, batches, load_dataset, prepare_data
from tune_robust.data.augment import random_crop_flip
from tune_robust.data.cifar import write_cifar10
from tune_robust.data.imagefolder import read_image_folder
from tune_robust.data.mnist import read_idx
from tune_robust.errors import ConfigError, DataError


def test_digits_embedded_default_is_deterministic():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.train_x.shape == (1438, 1, 8, 8) and a.test_x.shape == (359, 1, 8, 8)
    assert a.train_x.dtype == np.uint8 and a.train_x.max() == 255
    assert np.array_equal(a.test_y, b.test_y) and np.array_equal(a.train_x, b.train_x)
    assert set(np.unique(a.test_y)) == set(range(10))


def test_digits_are_scikit_learns_read_without_importing_it():
    code = (
        "import sys; from tune_robust.data.digits import _bundled; x, y = _bundled(); "
        "print('sklearn' in sys.modules, x.shape, int(y.sum()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "False", out  # (importing scikit-learn costs each trial process a second)
    from sklearn.datasets import load_digits

    from tune_robust.data.digits import _bundled

    images, target = _bundled()
    bunch = load_digits()
    assert np.array_equal(images, bunch.images) and np.array_equal(target, bunch.target)


def test_real_mnist_subset(mnist_dir):
    raw = mnist_dir / "MNIST" / "raw"
    md5 = hashlib.md5((raw / "t10k-images-idx3-ubyte.gz").read_bytes()).hexdigest()
    assert md5 == "9fb629c4189551a2d022fa330f9573f3"
    ds = load_dataset("mnist", mnist_dir)
    assert ds.train_x.shape == (14262, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert ds.train_y[:5].tolist() == [5, 0, 4, 1, 9]  # the famous first MNIST labels
    assert np.bincount(ds.test_y).tolist()[:3] == [980, 1135, 1032]  # official test class counts


def test_real_cifar10_subset(cifar_dir):
    ds = load_dataset("cifar10", cifar_dir)
    assert ds.train_x.shape == (4660, 3, 32, 32) and ds.test_x.shape == (932, 3, 32, 32)
    assert ds.num_classes == 10 and ds.train_y.max() == 9
    # The first official training image is a frog (label 6); pixel statistics are natural-image-like.
    assert ds.train_y[0] == 6 and 100 < ds.train_x.mean() < 140


def _write_idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    path.write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))


def test_tiny_idx_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (7, 28, 28))
    labels = rng.integers(0, 10, 7)
    for split in ("train", "t10k"):
        _write_idx(raw / f"{split}-images-idx3-ubyte.gz", imgs)
        _write_idx(raw / f"{split}-labels-idx1-ubyte.gz", labels)
    ds = load_dataset("mnist", tmp_path)
    assert np.array_equal(ds.train_x[:, 0], imgs) and np.array_equal(ds.test_y, labels)
    (raw / "bad.gz").write_bytes(gzip.compress(b"\x01\x02\x03\x04"))
    with pytest.raises(DataError, match="magic"):
        read_idx(raw / "bad.gz")


def test_tiny_cifar_pickles(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (18, 3, 32, 32), dtype=np.uint8)
    labels = np.tile([1, 2, 3], 6)
    d = write_cifar10(tmp_path, (images[:15], labels[:15]), (images[15:], labels[15:]))
    ds = load_dataset("cifar10", tmp_path)
    assert ds.train_x.shape == (15, 3, 32, 32) and ds.test_y.tolist() == [1, 2, 3]
    with open(d / "test_batch", "rb") as f:
        row0 = pickle.load(f)["data"][0]
    assert np.array_equal(ds.test_x[0].reshape(-1), row0)  # CHW row-major, unchanged
    assert np.array_equal(ds.train_x, images[:15]) and np.array_equal(ds.train_y, labels[:15])
    assert sorted(p.name for p in d.iterdir()) == [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
    bad = {
        "train images must be uint8 N x 3 x 32 x 32": (
            (images.transpose(0, 2, 3, 1), labels),
            (images, labels),
        ),
        "got float32": ((images.astype(np.float32) / 255, labels), (images, labels)),
        "test labels must be 18 integers in 0..9": ((images, labels), (images, labels + 8)),
        "train labels must be 18 integers": ((images, labels[:-1]), (images, labels)),
    }
    for message, (train, test) in bad.items():
        with pytest.raises(DataError, match=message):
            write_cifar10(tmp_path / "bad", train, test)
        assert not (tmp_path / "bad").exists()  # nothing is written before both splits are checked
    with pytest.raises(DataError, match="is not empty"):
        write_cifar10(tmp_path, (images, labels), (images, labels))


def test_tiny_svhn_mat(tmp_path):
    from scipy.io import savemat

    x = np.random.default_rng(2).integers(0, 256, (32, 32, 3, 4)).astype(np.uint8)
    y = np.array([[10], [1], [2], [10]])
    for split in ("train", "test"):
        savemat(tmp_path / f"{split}_32x32.mat", {"X": x, "y": y})
    ds = load_dataset("svhn", tmp_path)
    assert ds.test_y.tolist() == [0, 1, 2, 0]  # label 10 means digit 0
    assert np.array_equal(ds.train_x[1], x[..., 1].transpose(2, 0, 1))


def test_tiny_image_folder(tmp_path):
    from PIL import Image

    root = tmp_path / "tiny-imagenet-200"
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("n01\nn02\n")
    rows = []
    for i, wnid in enumerate(["n01", "n02"]):
        img_dir = root / "train" / wnid / "images"
        img_dir.mkdir(parents=True)
        Image.new("RGB", (64, 64), (i * 100, 0, 0)).save(img_dir / f"{wnid}_0.JPEG")
        Image.new("RGB", (64, 64), (i * 100, 0, 0)).save(root / "val" / "images" / f"val_{i}.JPEG")
        rows.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(rows))
    ds = load_dataset("tiny_imagenet", tmp_path)
    assert ds.train_x.shape == (2, 3, 64, 64) and ds.test_y.tolist() == [0, 1]
    assert read_image_folder(root).num_classes == 2


def test_missing_files_say_where_they_go(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        load_dataset("cifar10", tmp_path)
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("mnist", None)
    with pytest.raises(ConfigError, match="known datasets"):
        load_dataset("imagenet22k")


def test_split_is_fixed_and_disjoint():
    a = prepare_data("digits", torch.device("cpu"), val_fraction=0.2, split_seed=3)
    b = prepare_data("digits", torch.device("cpu"), val_fraction=0.2, split_seed=3)
    assert len(a.val) == round(1438 * 0.2) and len(a.train) + len(a.val) == 1438
    assert torch.equal(a.val.x, b.val.x)
    train_rows = {bytes(r) for r in a.train.x.reshape(len(a.train), -1).numpy()}
    overlap = sum(bytes(r) in train_rows for r in a.val.x.reshape(len(a.val), -1).numpy())
    assert overlap < 0.05 * len(a.val)  # digits has a few exact duplicate images, nothing more


def test_crop_flip_is_a_shifted_or_mirrored_window():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 8, 8)
    out = random_crop_flip(x, g, pad=2)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(64):
        windows = [padded[i, :, oy : oy + 8, ox : ox + 8] for oy in range(5) for ox in range(5)]
        windows += [w.flip(-1) for w in windows]
        assert any(torch.equal(out[i], w) for w in windows)
    flipped = sum(not torch.equal(out[i], padded[i, :, 2:10, 2:10]) for i in range(64))
    assert flipped > 32  # most images moved or mirrored


def test_batches_cover_split_once_and_are_deterministic():
    data = prepare_data("digits", torch.device("cpu"))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    ys1 = torch.cat([y for _, y in batches(data.train, 100, shuffle=True, generator=g1)])
    ys2 = torch.cat([y for _, y in batches(data.train, 100, shuffle=True, generator=g2)])
    assert torch.equal(ys1, ys2) and torch.equal(ys1.sort().values, data.train.y.sort().values)
    x, _ = next(batches(data.test, 10))
    assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1


def test_every_registered_dataset_has_metadata():
    for name in DATASETS:
        info = DATASETS.get(name)
        assert info.augment in ("none", "crop_flip") and info.default_eps > 0


def test_download_verifies_checksums(tmp_path, monkeypatch):
    from tune_robust.data import _download

    src = tmp_path / "src" / "t10k-images-idx3-ubyte.gz"
    src.parent.mkdir()
    src.write_bytes(b"official bytes")
    good = hashlib.md5(b"official bytes").hexdigest()
    dest = tmp_path / "data"
    monkeypatch.setitem(_download.SOURCES, "mnist", [(src.as_uri(), good, "MNIST/raw", False)])
    _download.download_dataset("mnist", dest)
    assert (dest / "MNIST/raw/t10k-images-idx3-ubyte.gz").read_bytes() == b"official bytes"

    monkeypatch.setitem(_download.SOURCES, "mnist", [(src.as_uri(), "0" * 32, "MNIST/raw", False)])
    (dest / "MNIST/raw/t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="checksum mismatch"):
        _download.download_dataset("mnist", dest)
    assert not (dest / "MNIST/raw/t10k-images-idx3-ubyte.gz").exists()  # nothing unverified is kept
