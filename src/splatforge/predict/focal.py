"""Focal length of a photo in pixels, from EXIF the way ml-sharp estimates it.

1. `FocalLengthIn35mmFilm` if present and >= 1 (mm, 35 mm equivalent);
2. else `FocalLength`; a value below 10 mm is taken as a phone's real focal length and
   multiplied by 8.4 (a crude crop factor, ml-sharp's);
3. else 30 mm.

The 35 mm equivalent is converted with the diagonals: f_px = f_mm * diag_px / diag(36 x 24 mm).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from PIL import ExifTags, Image, TiffTags

DEFAULT_FOCAL_MM = 30.0
_EXIF_IFD = 0x8769


def exif_tags(image: Image.Image) -> dict[str, Any]:
    """EXIF (Exif sub-IFD and base TIFF tags) by tag name; empty if there is none or it is
    unreadable."""
    try:
        exif = image.getexif()
        sub = exif.get_ifd(_EXIF_IFD)
    except Exception:  # noqa: BLE001 - malformed EXIF must not stop a prediction
        return {}
    tags = {ExifTags.TAGS[k]: v for k, v in sub.items() if k in ExifTags.TAGS}
    tags.update({TiffTags.TAGS_V2[k].name: v for k, v in exif.items() if k in TiffTags.TAGS_V2})
    return tags


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) else None


def focal_length_35mm(tags: Mapping[str, Any]) -> float:
    """The 35 mm-equivalent focal length (mm) by ml-sharp's rule (module docstring)."""
    f35 = _number(tags.get("FocalLengthIn35mmFilm", tags.get("FocalLenIn35mmFilm")))
    if f35 is not None and f35 >= 1:
        return f35
    f = _number(tags.get("FocalLength"))
    if f is None or f <= 0:
        return DEFAULT_FOCAL_MM
    return f * 8.4 if f < 10.0 else f


def focal_mm_to_px(f_mm: float, width: int, height: int) -> float:
    """35 mm-equivalent focal length -> pixels for an image of width x height."""
    return f_mm * math.hypot(width, height) / math.hypot(36.0, 24.0)
