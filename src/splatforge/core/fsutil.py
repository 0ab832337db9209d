"""`atomic_write`: a file appears complete under its name or not at all.

Every writer of a file that a reader may open while it is written, or that a crash must not leave
half-written (scenes, checkpoints, run stats, videos), goes through this one helper: the content
goes to a temporary file with a unique name in the same folder (so the rename stays on one file
system and two writers never share a temporary file), is flushed to disk, and is renamed over
the final name; on any failure the temporary file is removed and the old file, if any, is kept.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Union

from splatforge.errors import SplatforgeError

PathLike = Union[str, os.PathLike]
Content = Union[bytes, bytearray, memoryview, Iterable, Callable[[Path], object]]

__all__ = ["atomic_write", "temporary_sibling", "PathLike"]


def temporary_sibling(path: PathLike) -> Path:
    """A fresh name beside `path` for its temporary file: hidden, unique per call, and keeping
    the suffix (tools such as ffmpeg pick the container from it)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{secrets.token_hex(6)}.tmp{path.suffix}")


def atomic_write(path: PathLike, content: Content) -> Path:
    """Write `path` atomically; returns it as a Path.

    `content` is bytes, an iterable of bytes-like chunks (numpy arrays included), or a callable
    that writes the temporary file whose path it is given (for writers that want a file name,
    such as ffmpeg or torch.save). The temporary file is created before the callable runs (mode
    from the umask, as a plain open() would give). A missing parent folder is a SplatforgeError
    naming it; nothing is created in that case.
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise SplatforgeError(f"cannot write {path}: the folder {parent} does not exist")
    tmp = temporary_sibling(path)
    # O_EXCL: the name is ours alone; 0o666 lets the umask decide the mode (mkstemp would give 0o600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        if callable(content):
            os.close(fd)
            fd = -1
            content(tmp)
            fd = os.open(tmp, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
            fd = -1
        else:
            with os.fdopen(fd, "wb") as f:
                fd = -1
                for chunk in ([content] if isinstance(content, (bytes, bytearray, memoryview)) else content):
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())  # otherwise a crash after the rename can leave an empty file
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    return path
