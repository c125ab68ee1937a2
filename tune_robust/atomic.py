"""Whole-or-nothing file writes: every file the platform writes that a later run reads back.

Each write goes to a hidden temporary name beside the destination and is renamed into place
(``os.replace`` is atomic on one file system), so a reader sees the previous whole file or the new whole
file, never a part. A write that fails removes its temporary file and leaves the destination as it was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def temporary_name(dest: Path) -> Path:
    """The hidden name beside ``dest`` that a write goes to first (this process's own: two processes
    writing the same file never write into each other's temporary file)."""
    return dest.with_name(f".{dest.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def replacing(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``dest``, on any error it is removed."""
    dest = Path(dest)
    tmp = temporary_name(dest)
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_with(dest: str | Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(path)`` on a temporary path and rename it into ``dest`` (a library's own save)."""
    with replacing(dest) as tmp:
        write(tmp)


def write_text(dest: str | Path, text: str) -> None:
    with replacing(dest) as tmp:
        tmp.write_text(text)


def write_bytes(dest: str | Path, data: bytes) -> None:
    with replacing(dest) as tmp:
        tmp.write_bytes(data)


def copy_file(src: str | Path, dest: str | Path) -> None:
    """Copy ``src`` to ``dest`` whole."""
    with replacing(dest) as tmp:
        shutil.copyfile(src, tmp)
