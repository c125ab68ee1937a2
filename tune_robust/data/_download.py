"""Official dataset files: fetching them with checksum checks (only with --download, on machines with
internet), and explaining a file that cannot be read (its checksum against the official one)."""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import urllib.request
import zipfile
from pathlib import Path

from tune_robust.errors import DataError

# (url, md5, subfolder to put it in, archive to unpack?) per dataset; checksums are the published ones.
_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"
SOURCES: dict[str, list[tuple[str, str, str, bool]]] = {
    "mnist": [
        (_MNIST + "train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", "MNIST/raw", False),
        (_MNIST + "train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", "MNIST/raw", False),
        (_MNIST + "t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", "MNIST/raw", False),
        (_MNIST + "t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", "MNIST/raw", False),
    ],
    "cifar10": [
        (
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "c58f30108f718f92721af3b95e74349a",
            "",
            True,
        )
    ],
    "cifar100": [
        (
            "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
            "eb9058c3a382ffc7106e4002c42a8d85",
            "",
            True,
        )
    ],
    "svhn": [
        (
            "http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
            "e26dedcc434d2e4c54c9b2d4a06d8373",
            "",
            False,
        ),
        (
            "http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
            "eb5a983be6a315427106f1b164d9cef3",
            "",
            False,
        ),
    ],
    "tiny_imagenet": [
        ("http://cs231n.stanford.edu/tiny-imagenet-200.zip", "90528d7ca1a48142e341f4ef8d21d0de", "", True)
    ],
}


# The published MD5 of each official file as it sits in the data dir (CIFAR's unpacked batches as
# torchvision lists them; MNIST's .gz and SVHN's .mat as downloaded). A subset or re-packed file differs.
FILE_MD5: dict[str, str] = {
    **{url.rsplit("/", 1)[1]: md5 for name in ("mnist", "svhn") for url, md5, _, _ in SOURCES[name]},
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "train": "16019d7e3df5f24257cddd939b257f8d",
    "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
}


def damaged(path: Path, what: str, error: BaseException) -> DataError:
    """The error for a dataset file its reader failed on: which file, what went wrong, and whether its
    checksum is the official file's (a damaged or truncated copy) or not known."""
    detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    size = path.stat().st_size if path.exists() else 0
    message = f"{path} ({size:,} bytes) cannot be read as {what} ({detail}); "
    official = FILE_MD5.get(path.name)
    if official is None:
        return DataError(message + "the file is damaged or not in the official format; replace it")
    got = md5sum(path)
    if got != official:
        return DataError(
            message + f"its MD5 {got} is not the official file's {official}: the file is damaged or "
            "truncated; replace it with a fresh copy (--download fetches and verifies the official files)"
        )
    return DataError(message + f"its MD5 matches the official file's ({official}), so the reader failed")


def md5sum(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_dataset(name: str, data_dir: Path) -> None:
    """Download (once) and verify the official files of ``name`` into ``data_dir``."""
    if name not in SOURCES:
        raise DataError(f"--download: no official source known for {name!r}")
    for url, md5, sub, unpack in SOURCES[name]:
        dest_dir = data_dir / sub
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / url.rsplit("/", 1)[1]
        if not (dest.exists() and md5sum(dest) == md5):
            tmp = dest.with_suffix(dest.suffix + ".part")
            try:
                with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
                    shutil.copyfileobj(r, f)
            except OSError as e:
                raise DataError(
                    f"--download of {url} failed ({e}); put the files in {data_dir} by hand"
                ) from e
            got = md5sum(tmp)
            if got != md5:
                tmp.unlink()
                raise DataError(f"{url}: checksum mismatch (md5 {got}, expected {md5}); file removed")
            tmp.replace(dest)
        if unpack:
            if dest.suffix == ".zip":
                with zipfile.ZipFile(dest) as z:
                    z.extractall(dest_dir)
            else:
                with tarfile.open(dest) as t:
                    t.extractall(dest_dir, filter="data")
