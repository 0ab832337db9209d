"""atomic_write: the file appears whole or not at all; writers never share a temporary file."""

import os

import numpy as np
import pytest

from splatforge.core.fsutil import atomic_write
from splatforge.errors import SplatforgeError


def _leftovers(folder, keep):
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_bytes_chunks_and_callback(tmp_path):
    atomic_write(tmp_path / "a.bin", b"abc")
    atomic_write(tmp_path / "b.bin", [b"ab", np.arange(3, dtype=np.uint8), memoryview(b"z")])
    atomic_write(tmp_path / "c.txt", lambda tmp: tmp.write_text("from a callback"))
    assert (tmp_path / "a.bin").read_bytes() == b"abc"
    assert (tmp_path / "b.bin").read_bytes() == b"ab\x00\x01\x02z"
    assert (tmp_path / "c.txt").read_text() == "from a callback"
    assert _leftovers(tmp_path, {"a.bin", "b.bin", "c.txt"}) == []


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "scene.ply"
    target.write_bytes(b"old")

    def chunks():
        yield b"new, half"
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, chunks())

    def callback(tmp):
        tmp.write_bytes(b"partial")
        raise ValueError("encoder crashed")

    with pytest.raises(ValueError, match="encoder crashed"):
        atomic_write(target, callback)
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path, {"scene.ply"}) == []


def test_two_writers_in_flight_do_not_share_a_temporary_file(tmp_path):
    # The second write starts and finishes while the first is half done: with one fixed temporary
    # name the second would rename the first's file away and the first would fail.
    target = tmp_path / "stats.json"
    seen = []

    def outer(tmp):
        tmp.write_text("outer")
        atomic_write(target, lambda inner_tmp: (seen.append(inner_tmp), inner_tmp.write_text("inner")))
        seen.append(tmp)

    atomic_write(target, outer)
    assert seen[0] != seen[1] and seen[0].parent == seen[1].parent == tmp_path
    assert target.read_text() == "outer"
    assert _leftovers(tmp_path, {"stats.json"}) == []


def test_missing_folder_is_named_and_nothing_is_created(tmp_path):
    with pytest.raises(SplatforgeError, match="does not exist"):
        atomic_write(tmp_path / "no" / "x.bin", b"x")
    assert not (tmp_path / "no").exists()


def test_mode_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "m.bin", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "m.bin").stat().st_mode & 0o777 == 0o644
