"""`load_scene` / `save_scene`: any supported splat file to and from `Gaussians`.

| format           | extension(s)                        | magic bytes   |
|------------------|-------------------------------------|---------------|
| INRIA PLY        | .ply                                | "ply\\n"      |
| compressed PLY   | .compressed.ply (any PLY with chunk) | "ply\\n"      |
| antimatter15     | .splat                              | none          |
| SPZ              | .spz                                | gzip 1f 8b    |
| SOG bundle       | .sog                                | zip "PK"      |
| SOG folder       | a folder, or its meta.json          | -             |

Loading trusts the magic bytes over the extension; saving goes by the extension unless `format`
is given.

Writing SOG takes decisions that belong to `splatforge.compress` (the texel layout and the
k-means codebooks), and `io` imports nothing above it: `splatforge.compress` registers its SOG
writer here with `register_writer` when it is imported, and `save_scene(..., "x.sog")` says so
when it has not been.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from splatforge.core.gaussians import Gaussians
from splatforge.errors import FormatError, SplatforgeError
from splatforge.io.formats import (is_compressed_ply, read_compressed_ply, read_sog, read_splat, read_spz,
                                   write_compressed_ply, write_splat, write_spz)
from splatforge.io.formats.common import PathLike
from splatforge.io.ply import read_ply, write_ply

FORMATS = ("ply", "compressed-ply", "splat", "spz", "sog")
# The options each built-in writer takes; formats whose writer lives above io are registered.
_OPTIONS: dict[str, frozenset[str]] = {"ply": frozenset(), "compressed-ply": frozenset({"order"}),
                                       "splat": frozenset(), "spz": frozenset({"antialiased", "version"})}
_REGISTERED: dict[str, tuple[Callable[..., None], frozenset[str]]] = {}


def register_writer(fmt: str, write: Callable[..., None], options: Iterable[str]) -> None:
    """Let `save_scene` write `fmt` with `write(gaussians, path, **options)`, which takes the
    keyword options named in `options`. For formats whose encoder lives in a higher layer
    (`splatforge.compress` registers "sog")."""
    if fmt not in FORMATS or fmt in _OPTIONS:
        raise ValueError(f"{fmt!r} is not a format that takes a registered writer")
    _REGISTERED[fmt] = (write, frozenset(options))


def format_from_extension(path: PathLike) -> str | None:
    """The format a path's name implies, or None."""
    name = Path(path).name.lower()
    if name.endswith(".compressed.ply"):
        return "compressed-ply"
    if name.endswith("meta.json"):
        return "sog"
    for ext, fmt in ((".ply", "ply"), (".splat", "splat"), (".spz", "spz"), (".sog", "sog")):
        if name.endswith(ext):
            return fmt
    return None


def detect_format(path: PathLike) -> str:
    """The format of an existing file or SOG folder, from its magic bytes, then its name."""
    path = Path(path)
    if path.is_dir():
        if (path / "meta.json").is_file():
            return "sog"
        raise FormatError(f"{path}: a folder without meta.json is not a SOG scene")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise SplatforgeError(f"cannot open {path}: {e.strerror or e}") from e
    if head.startswith((b"ply\n", b"ply\r\n")):
        return "compressed-ply" if is_compressed_ply(path) else "ply"
    if head.startswith(b"\x1f\x8b") or head.startswith(b"NGSP"):
        return "spz"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "sog"
    by_name = format_from_extension(path)
    if by_name in ("splat", "sog"):  # .splat has no magic; a .sog without "PK" fails as a zip
        return by_name
    raise FormatError(f"{path}: unrecognized splat file (not PLY, SPZ, SOG or .splat by its first bytes "
                      f"{head[:4]!r} and its name)")


def load_scene(path: PathLike) -> Gaussians:
    """Read a scene in any supported format (see the module table) as CPU float32 Gaussians."""
    if not os.path.exists(path):
        raise SplatforgeError(f"{path}: no such file or folder")
    fmt = detect_format(path)
    if fmt == "ply":
        return read_ply(path)
    if fmt == "compressed-ply":
        return read_compressed_ply(path)
    if fmt == "splat":
        return read_splat(path)
    if fmt == "spz":
        return read_spz(path)
    return read_sog(path)


def save_scene(gaussians: Gaussians, path: PathLike, format: str | None = None, **options: Any) -> None:
    """Write `gaussians` in the format `format` or, if None, the one the path's extension names.

    Options by format: spz: `antialiased`, `version` (3 or 4); compressed-ply: `order`; sog: the
    fields of `splatforge.compress.SogConfig` (sort, plas_iterations, palette_size,
    kmeans_iterations, webp_method, position_slack, seed), once `splatforge.compress` is imported
    (see the module docstring). A path without a known extension is written as a SOG folder only
    if `format="sog"`.
    """
    fmt = format or format_from_extension(path)
    if fmt is None:
        raise SplatforgeError(f"{path}: cannot tell the format from the name; use one of .ply, "
                              ".compressed.ply, .splat, .spz, .sog (or pass format=)")
    if fmt not in FORMATS:
        raise SplatforgeError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if fmt in _OPTIONS:
        allowed = _OPTIONS[fmt]
    elif fmt in _REGISTERED:
        allowed = _REGISTERED[fmt][1]
    else:
        raise SplatforgeError(f"{path}: writing {fmt} needs splatforge.compress, which chooses the layout and "
                              "codebooks: `import splatforge.compress` first (then save_scene writes it), or call "
                              "splatforge.compress.compress_scene")
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise SplatforgeError(f"options {unknown} do not apply to {fmt}; it takes {sorted(allowed) or 'none'}")
    if fmt == "ply":
        write_ply(path, gaussians)
    elif fmt == "compressed-ply":
        write_compressed_ply(path, gaussians, **options)
    elif fmt == "splat":
        write_splat(path, gaussians)
    elif fmt == "spz":
        write_spz(path, gaussians, **options)
    else:
        _REGISTERED[fmt][0](gaussians, path, **options)
