"""`load_capture(path)`: detect a capture's format, read it, split it, and give it points to start from.

Formats, checked in this order for a folder:
- COLMAP: `sparse/0/` or `sparse/` (or the folder itself) holding cameras.bin or cameras.txt, photos in images/;
- Blender NeRF-synthetic: transforms_train.json (with transforms_test.json);
- nerfstudio / instant-ngp: transforms.json.
A .json file is read as a transforms.json (a transforms_train/val/test.json as its Blender folder).
A folder of photos without poses is refused with the command that makes a capture from them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

from ..errors import SplatforgeError
from .blender import read_blender_capture
from .colmap import read_colmap_capture
from .init_points import with_initial_points
from .options import CaptureOptions, InitSource
from .photos import DEFAULT_LONG_SIDE
from .transforms import IMAGE_SUFFIXES, read_transforms_capture
from .types import Capture, assemble

FORMATS = ("colmap", "blender", "transforms")
_BLENDER_JSONS = ("transforms_train.json", "transforms_val.json", "transforms_test.json")


def _has_colmap_model(root: Path) -> bool:
    return any((d / f"cameras.{ext}").is_file() for d in (root / "sparse" / "0", root / "sparse", root)
               for ext in ("bin", "txt"))


def _photos_in(folder: Path) -> list[Path]:
    found = []
    for sub in (folder, folder / "images"):
        if sub.is_dir():
            found += [p for p in sub.iterdir() if p.is_file() and p.suffix in IMAGE_SUFFIXES]
    return found


def detect_format(path: str | os.PathLike) -> tuple[str, Path]:
    """("colmap" | "blender" | "transforms", the folder or json to read) for a capture path."""
    path = Path(path)
    if not path.exists():
        raise SplatforgeError(f"{path} does not exist; give a capture folder (COLMAP, transforms.json or Blender) "
                              "or a transforms.json file")
    if path.is_file():
        if path.name in _BLENDER_JSONS:
            return "blender", path.parent
        if path.suffix.lower() == ".json":
            return "transforms", path
        raise SplatforgeError(f"{path} is a file but not a transforms .json; give the capture's folder")
    if _has_colmap_model(path):
        return "colmap", path
    if (path / "transforms_train.json").is_file():
        return "blender", path
    if (path / "transforms.json").is_file():
        return "transforms", path / "transforms.json"
    photos = _photos_in(path)
    if not any(path.iterdir()):
        raise SplatforgeError(f"{path} is an empty folder; give a capture (COLMAP sparse/0 with images/, a "
                              "transforms.json, or a Blender scene)")
    if photos:
        count = f"{len(photos)} photo{'s' if len(photos) != 1 else ''}"
        hint = (" (SfM needs many overlapping photos, not one)" if len(photos) == 1 else "")
        raise SplatforgeError(f"{path} holds {count} but no camera poses{hint}; make a capture from them first: "
                              f"splatforge capture {path} -o CAPTURE, then train on CAPTURE")
    raise SplatforgeError(f"{path}: not a capture: found no COLMAP model (sparse/0/cameras.bin or .txt), no "
                          "transforms.json and no transforms_train.json")


def load_capture(
    path: str | os.PathLike,
    downscale: Optional[int] = CaptureOptions.downscale,
    test_every: Optional[int] = CaptureOptions.test_every,
    test_list: Optional[Sequence[str]] = CaptureOptions.test_list,
    normalize: bool = True,
    *,
    init: InitSource = CaptureOptions.init,
    long_side_limit: int = DEFAULT_LONG_SIDE,
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    skip_missing: bool = CaptureOptions.skip_missing,
    cache_dir: Optional[str | os.PathLike] = None,
    num_random_points: int = CaptureOptions.num_random_points,
    seed: int = 0,
    max_pixels: Optional[int] = 64_000_000,
) -> Capture:
    """Read any supported capture (see the module doc) for training, viewing or evaluation.
    `downscale`, `test_every`, `test_list`, `skip_missing` and `init` are the fields of `CaptureOptions`
    (their defaults are its defaults): `load_capture(path, **dataclasses.asdict(options))`.

    Args:
        path: a capture folder, or a transforms .json file.
        downscale: shrink photos by this integer factor; None: the long-side rule (`long_side_limit`,
            default 1000 px) picks it, and one line says so.
        test_every: hold out every Nth photo (sorted by name; 0: none). None: the capture's own split
            (Blender's test json, a transforms.json's test_filenames), else every 8th.
        test_list: names of held-out photos: as the capture writes them (a json's file_path) or bare
            file names. Overrides test_every.
        normalize: train in the normalized frame (cameras centred, unit radius); False: the capture's frame.
        init: where starting points come from when training (see `init_points`): "auto" (the capture's
            points, else triangulated, else random), "sfm", "triangulate", "random", or "none" (viewing,
            evaluation: no points needed).
        background: colour RGBA photos are composited on (use the training background).
        skip_missing: drop json frames whose image file is missing (with a printed count), instead of an error.
        cache_dir: where triangulated points are cached (the training output folder), or None.

    Raises:
        SplatforgeError: naming the file or frame, for anything wrong with the capture; nothing is written
        before the capture has loaded (except COLMAP's images_N_cache, as before).
    """
    kind, source = detect_format(path)
    default_test = None
    source_from_capture = None
    options = dict(downscale=downscale, long_side_limit=long_side_limit, max_pixels=max_pixels)
    if kind == "colmap":
        frames, points, colors = read_colmap_capture(source, **options)
    elif kind == "blender":
        frames, points, colors, default_test = read_blender_capture(
            source, background=background, skip_missing=skip_missing, **options)
    else:
        frames, points, colors, source_from_capture, default_test = read_transforms_capture(
            source, background=background, skip_missing=skip_missing, **options)
    if len(frames) < 2:
        raise SplatforgeError(f"{source}: a capture needs at least 2 posed photos, this one has {len(frames)}")
    capture = assemble(frames, points, colors, path=source, format=kind, test_every=test_every, test_list=test_list,
                       normalize=normalize, default_test=default_test, source_from_capture=source_from_capture)
    return with_initial_points(capture, init, Path(cache_dir) if cache_dir is not None else None,
                               num_random_points, seed)
