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
is given. SOG is written through `splatforge.compress` (layout and codebooks are compression
decisions), imported only when needed.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from splatforge.core.gaussians import Gaussians
from splatforge.errors import FormatError, SplatforgeError
from splatforge.io.formats import (is_compressed_ply, read_compressed_ply, read_sog, read_splat, read_spz,
                                   write_compressed_ply, write_splat, write_spz)
from splatforge.io.formats._common import PathLike
from splatforge.io.ply import read_ply, write_ply

FORMATS = ("ply", "compressed-ply", "splat", "spz", "sog")


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
    kmeans_iterations, webp_method, position_slack, seed). A path without a known extension is
    written as a SOG folder only if `format="sog"`.
    """
    fmt = format or format_from_extension(path)
    if fmt is None:
        raise SplatforgeError(f"{path}: cannot tell the format from the name; use one of .ply, "
                              ".compressed.ply, .splat, .spz, .sog (or pass format=)")
    if fmt not in FORMATS:
        raise SplatforgeError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if fmt == "sog":
        from splatforge.compress.sog import SogConfig, compress_scene

        allowed = {f.name for f in dataclasses.fields(SogConfig)}
    else:
        allowed = {"ply": set(), "compressed-ply": {"order"}, "splat": set(), "spz": {"antialiased", "version"}}[fmt]
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
        compress_scene(gaussians, path, SogConfig(**options))
