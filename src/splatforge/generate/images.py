"""The pictures `generate` reads: the object's picture, cut out and re-centred as LGM does, and
four user-supplied views.

LGM's recentring (kiui.op.recenter, border_ratio 0.2): the object's bounding box is scaled so its
longer side is 80% of the square canvas (the picture's longer side) and centred on it; the
background becomes white (the multi-view model was trained on objects over white).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence, Union

import numpy as np
from PIL import Image, ImageOps

from splatforge.core.images import load_image
from splatforge.core.limits import DEFAULT_MAX_PIXELS
from splatforge.errors import SplatforgeError

PictureInput = Union[str, os.PathLike, np.ndarray]

MIN_SIDE = 32  # pixels: a smaller picture (or object) has too little detail for a 256-pixel model
BORDER_RATIO = 0.2


def _alpha_of(path: Path) -> np.ndarray | None:  # [H, W] float32 in [0, 1], upright
    with Image.open(path) as im:
        has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
        if not has_alpha:
            return None
        im = ImageOps.exif_transpose(im)
        return np.asarray(im.convert("RGBA").getchannel("A"), dtype=np.float32) / np.float32(255.0)


def load_picture(image: PictureInput, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 ) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(RGB [H, W, 3], alpha [H, W] or None, a name for messages), floats in [0, 1]. Arrays are
    H x W x 3 or 4, uint8 or float in [0, 1]."""
    if isinstance(image, np.ndarray):
        name = "the image array"
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise SplatforgeError(f"{name} must be H x W x 3 (RGB) or 4 (RGBA), got {image.shape}")
        pixels = image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)
        rgb, alpha = pixels[..., :3], (pixels[..., 3] if image.shape[2] == 4 else None)
        if max_pixels is not None and rgb.shape[0] * rgb.shape[1] > max_pixels:
            raise SplatforgeError(f"{name} has {rgb.shape[0] * rgb.shape[1]:,} pixels, over the limit "
                                  f"of {max_pixels:,}")
    else:
        path = Path(image)
        name = str(path)
        rgb = load_image(path, max_pixels)  # every file error, and the pixel limit
        alpha = _alpha_of(path)
    if min(rgb.shape[:2]) < MIN_SIDE:
        raise SplatforgeError(f"{name} is {rgb.shape[1]}x{rgb.shape[0]} pixels; generate needs at least "
                              f"{MIN_SIDE} pixels on each side")
    return np.ascontiguousarray(rgb, dtype=np.float32), alpha, name


def remove_background(rgb: np.ndarray, name: str) -> np.ndarray:  # [H, W, 3] -> alpha [H, W]
    """The object's alpha from rembg (optional dependency), as LGM does for opaque pictures."""
    try:
        import rembg
    except ImportError as err:
        raise SplatforgeError(
            f"{name} has no transparent background to cut the object out with: save it as a PNG "
            "whose background is transparent (alpha 0), or install the optional background remover "
            "(pip install rembg)") from err
    rgba = rembg.remove((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
    return np.asarray(rgba, dtype=np.float32)[..., 3] / 255.0


def cut_out(rgb: np.ndarray, alpha: np.ndarray | None, name: str,
            border_ratio: float = BORDER_RATIO) -> np.ndarray:
    """The object over white, re-centred on a square canvas (see the module doc): [S, S, 3]."""
    if alpha is None or float(alpha.min()) >= 1.0:
        alpha = remove_background(rgb, name)
    mask = alpha > 0
    if not mask.any():
        raise SplatforgeError(f"{name} shows no object: its alpha channel is 0 everywhere (fully "
                              "transparent); the object's pixels need alpha > 0")
    rows, cols = np.nonzero(mask)
    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    h, w = max(bottom - top, 1), max(right - left, 1)
    if max(h, w) < MIN_SIDE // 2:
        raise SplatforgeError(f"the object in {name} is only {w + 1}x{h + 1} pixels; make it at least "
                              f"{MIN_SIDE // 2} pixels across")
    size = max(rgb.shape[:2])
    scale = int(size * (1 - border_ratio)) / max(h, w)
    h2, w2 = max(1, int(h * scale)), max(1, int(w * scale))
    # As kiui's recenter: the box [top, bottom) x [left, right), on a transparent canvas,
    # resized with area averaging; then composited over white as LGM's infer.py does.
    rgba = np.concatenate([rgb, alpha[..., None]], axis=-1)[top:top + h, left:left + w]
    canvas = np.zeros((size, size, 4), dtype=np.float32)
    y0, x0 = (size - h2) // 2, (size - w2) // 2
    canvas[y0:y0 + h2, x0:x0 + w2] = _resize(rgba, w2, h2)
    return canvas[..., :3] * canvas[..., 3:] + (1 - canvas[..., 3:])


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:  # [h, w, C] float
    """Per-channel float resize, area-averaging when shrinking (OpenCV's INTER_AREA)."""
    channels = [Image.fromarray(np.ascontiguousarray(image[..., c]), mode="F") for c in range(image.shape[-1])]
    return np.stack([np.asarray(c.resize((width, height), Image.Resampling.BOX if width < image.shape[1]
                                         else Image.Resampling.BILINEAR)) for c in channels], axis=-1)


def load_views(paths: Sequence[PictureInput], max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Four square views of one size (azimuths 0, 90, 180, 270: front, right, back, left) ->
    [4, S, S, 3] over white (a transparent background is composited onto white)."""
    if len(paths) != 4:
        raise SplatforgeError(f"--views needs four images (azimuths 0, 90, 180, 270 degrees), got {len(paths)}")
    views, names = [], []
    for path in paths:
        rgb, alpha, name = load_picture(path, max_pixels)
        if alpha is not None:
            rgb = rgb * alpha[..., None] + (1 - alpha[..., None])
        views.append(rgb)
        names.append(name)
    sizes = {v.shape[:2] for v in views}
    if len(sizes) > 1:
        listed = ", ".join(f"{n} {v.shape[1]}x{v.shape[0]}" for n, v in zip(names, views))
        raise SplatforgeError(f"the four views must have the same size: {listed}")
    height, width = views[0].shape[:2]
    if height != width:
        raise SplatforgeError(f"the views must be square (LGM's cameras have equal horizontal and "
                              f"vertical fields of view); {names[0]} is {width}x{height}")
    return np.stack(views).astype(np.float32)
