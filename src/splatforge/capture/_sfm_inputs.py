"""The photos SfM runs on: found in the input folder, decoded in full (so a truncated file fails here,
named, before any SfM work), turned upright by their EXIF orientation, scaled down to the processing
size and saved; with a focal-length prior from EXIF where the camera wrote one.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from ..errors import SplatforgeError

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".heic", ".heif")
_KEEP_SUFFIXES = (".jpg", ".jpeg", ".png")  # other formats are saved as PNG for COLMAP's reader
_EXIF_IFD = 0x8769
_FOCAL_35MM = 0xA405  # FocalLengthIn35mmFilm
_ORIENTATION = 0x0112
# 128 megapixels, as core.images: larger headers are refused before decoding (decompression bombs).
_MAX_PIXELS = 2**27


@dataclass
class PreparedPhoto:
    name: str  # file name under the output images/ folder
    source: Path
    size: tuple[int, int]  # (width, height) as saved, upright
    focal_px: Optional[float]  # EXIF 35 mm-equivalent focal length in pixels of the saved size


def find_photos(folder: Path) -> list[Path]:
    """Photos directly in `folder` (or in folder/images when the folder itself holds none), by name."""
    def listed(d: Path) -> list[Path]:
        return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES
                      and not p.name.startswith("."))

    photos = listed(folder)
    if not photos and (folder / "images").is_dir():
        photos = listed(folder / "images")
    return photos


def _open_upright(path: Path, max_image_size: int) -> Image.Image:
    if path.suffix.lower() in (".heic", ".heif"):
        try:
            import pillow_heif

            pillow_heif.register_heif_opener()
        except ImportError:
            raise SplatforgeError(f"{path}: HEIC photos need pillow-heif (pip install pillow-heif), or convert "
                                  "them to JPEG") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        if im.width * im.height > _MAX_PIXELS:
            raise SplatforgeError(f"{path} is {im.width}x{im.height} pixels, over the {_MAX_PIXELS:,}-pixel limit")
        if ImageFile.LOAD_TRUNCATED_IMAGES:
            raise SplatforgeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set in this process, so truncated photos "
                                  "cannot be detected; unset it before running SfM")
        if im.format == "JPEG" and max(im.size) >= 2 * max_image_size:
            # JPEG's reduced-size decoding (1/2, 1/4, 1/8 of the size, never below the request):
            # a 12 MP phone photo decodes several times faster, and every byte is still read.
            scale = max_image_size / max(im.size)
            im.draft("RGB", (math.ceil(im.width * scale), math.ceil(im.height * scale)))
        im.load()
        return ImageOps.exif_transpose(im)
    except SplatforgeError:
        raise
    except UnidentifiedImageError:
        raise SplatforgeError(f"{path} is not an image Pillow can read (unknown format or corrupt header); "
                              "remove it from the folder") from None
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - Pillow raises many types for corrupt data
        raise SplatforgeError(f"{path} is truncated or corrupt and cannot be decoded ({err}); remove it from "
                              "the folder or replace it") from None


def _focal_35mm(im: Image.Image) -> Optional[float]:
    try:
        value = im.getexif().get_ifd(_EXIF_IFD).get(_FOCAL_35MM)
        return float(value) if value and float(value) > 0 else None
    except (AttributeError, KeyError, ValueError, TypeError, ZeroDivisionError):
        return None


def prepare_photo(source: Path, folder: Path, max_image_size: int) -> PreparedPhoto:
    """Decode `source`, make it upright, scale its long side down to `max_image_size` and save it in
    `folder`, keeping its EXIF (orientation reset, since the pixels are now upright)."""
    im = _open_upright(source, max_image_size)
    focal_35 = _focal_35mm(im)
    exif = im.getexif()
    if _ORIENTATION in exif:
        exif[_ORIENTATION] = 1
    if im.mode != "RGB":
        im = im.convert("RGB")
    factor = min(1.0, max_image_size / max(im.size))
    if factor < 1.0:
        im = im.resize((max(1, round(im.width * factor)), max(1, round(im.height * factor))), Image.LANCZOS)
    suffix = source.suffix.lower()
    name = source.name if suffix in _KEEP_SUFFIXES else source.stem + ".png"
    target = folder / name
    if suffix in (".jpg", ".jpeg"):
        im.save(target, quality=95, exif=exif.tobytes())
    else:
        im.save(target)
    # A 35 mm-equivalent focal length is relative to the 36 mm long side of a full-frame sensor.
    focal_px = focal_35 / 36.0 * max(im.size) if focal_35 else None
    return PreparedPhoto(name=name, source=source, size=im.size, focal_px=focal_px)


def camera_params(model: str, width: int, height: int, focal: float) -> str:
    """COLMAP's parameter string of `model` with focal length `focal` and the principal point at the
    image centre, no distortion."""
    cx, cy = width / 2.0, height / 2.0
    params = {
        "SIMPLE_PINHOLE": [focal, cx, cy],
        "PINHOLE": [focal, focal, cx, cy],
        "SIMPLE_RADIAL": [focal, cx, cy, 0.0],
        "RADIAL": [focal, cx, cy, 0.0, 0.0],
        "OPENCV": [focal, focal, cx, cy, 0.0, 0.0, 0.0, 0.0],
    }[model]
    return ",".join(f"{p:.6g}" for p in params)
