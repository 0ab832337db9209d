"""Splat file formats beyond INRIA PLY (which lives in `splatforge.io.ply`).

- `.splat` (antimatter15): `read_splat`, `write_splat`
- SPZ (Niantic, versions 2-4 read, 3 (default) or 4 written): `read_spz`, `write_spz`
- PlayCanvas compressed PLY: `read_compressed_ply`, `write_compressed_ply`
- PlayCanvas SOG version 2 (folder or `.sog` zip): `read_sog`, `write_sog` + `pack_sog` (the
  codec; `splatforge.compress.encode_sog` chooses the layout and codebooks)

`splatforge.io.scene.load_scene` / `save_scene` pick among them by extension and magic bytes.
Every reader raises `splatforge.errors.FormatError` for files that are not what they claim.
"""

from splatforge.io.formats.compressed_ply import is_compressed_ply, read_compressed_ply, write_compressed_ply
from splatforge.io.formats.sog import SogContent, pack_sog, read_sog, write_sog
from splatforge.io.formats.splat import read_splat, write_splat
from splatforge.io.formats.spz import read_spz, write_spz

__all__ = ["read_splat", "write_splat", "read_spz", "write_spz", "read_compressed_ply", "write_compressed_ply",
           "is_compressed_ply", "read_sog", "write_sog", "pack_sog", "SogContent"]
