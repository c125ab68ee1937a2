"""Whole-or-nothing writes: a reader sees the old file or the new one, and a failed write leaves the
old file and no temporary file behind."""

from __future__ import annotations

import pytest

from tune_robust import atomic


def test_a_write_replaces_the_file_whole(tmp_path):
    dest = tmp_path / "state.json"
    atomic.write_text(dest, "old")
    atomic.write_text(dest, "new")
    assert dest.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary_file(tmp_path):
    dest = tmp_path / "trials.parquet"
    atomic.write_bytes(dest, b"whole")

    def half_then_fail(tmp):
        tmp.write_bytes(b"ha")  # a partial file, as a full disk leaves it
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic.write_with(dest, half_then_fail)
    assert dest.read_bytes() == b"whole"
    assert [p.name for p in tmp_path.iterdir()] == ["trials.parquet"]


def test_copy_file_copies_whole(tmp_path):
    src, dest = tmp_path / "a", tmp_path / "sub" / "b"
    dest.parent.mkdir()
    src.write_bytes(b"x" * 10_000)
    atomic.copy_file(src, dest)
    assert dest.read_bytes() == src.read_bytes()
