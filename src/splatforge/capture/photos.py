"""Photos at a training resolution: the long-side rule, fast reading, lens undistortion, alpha compositing.

Resolution rule: unless `downscale` is given, photos whose long side exceeds `long_side_limit` pixels
(default 1000, what a CPU trains at a few steps a second) are shrunk by the smallest integer factor
that brings the largest photo's long side within it; one line says so. An integer factor keeps the
`images_N/` folders COLMAP and nerfstudio write usable. `downscale=N` overrides (1: full size).

Reading: EXIF orientation is applied (as `core.images.load_image` does); a JPEG read at a factor of 2 or
more is decoded at reduced size by libjpeg (Pillow's draft mode), which is most of the time a 12 MP
photo would otherwise take; photos are decoded on all cores.

Undistortion keeps the intrinsics K: OPENCV's radial-tangential model (k1..k4 radial as nerfstudio
orders them, p1 p2 tangential) and OPENCV_FISHEYE's equidistant model (k1..k4) are resampled to the
pinhole camera with the same K. The models act on normalized image coordinates, so a photo shrunk
together with its K keeps the same coefficients, and undistorting after shrinking costs 1/factor^2.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, TypeVar

import numpy as np
from PIL import Image, ImageOps

from ..core.images import DEFAULT_MAX_PIXELS, load_image
from ..errors import SplatforgeError
from ..io.colmap import ColmapCamera, remap_to_pinhole, undistort_image

DEFAULT_LONG_SIDE = 1000
_T = TypeVar("_T")
_R = TypeVar("_R")


def training_downscale(sizes: Iterable[tuple[int, int]], downscale: int | None,
                       long_side_limit: int = DEFAULT_LONG_SIDE, announce: bool = True) -> int:
    """The integer factor photos of these (width, height) sizes are shrunk by (see the module doc)."""
    sizes = list(sizes)
    if downscale is not None:
        if isinstance(downscale, bool) or int(downscale) != downscale or downscale < 1:
            raise SplatforgeError(f"downscale must be an integer >= 1, got {downscale}")
        factor = int(downscale)
        note = f"--downscale {factor}"
    else:
        if long_side_limit < 16:
            raise SplatforgeError(f"the long side limit must be >= 16 pixels, got {long_side_limit}")
        longest = max(max(w, h) for w, h in sizes)
        factor = max(1, math.ceil(longest / long_side_limit))
        note = f"long side limit {long_side_limit}; --downscale overrides"
    if announce and factor > 1 and sizes:
        w, h = max(sizes, key=lambda s: s[0] * s[1])
        print(f"photos resized from {w}x{h} to {scaled_size((w, h), factor)[0]}x{scaled_size((w, h), factor)[1]} "
              f"({note})")
    return factor


def scaled_size(size: tuple[int, int], factor: int) -> tuple[int, int]:
    return max(1, round(size[0] / factor)), max(1, round(size[1] / factor))


def upright_size(path: Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) of a photo after its EXIF orientation, from its header only."""
    im = _open(path, max_pixels)
    with im:
        w, h = im.size
        orientation = im.getexif().get(0x0112, 1)
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _open(path: Path, max_pixels: int | None) -> Image.Image:
    if not path.is_file():
        raise SplatforgeError(f"image not found: {path}")
    try:
        im = Image.open(path)
    except Exception as err:  # noqa: BLE001 - corrupt headers raise anything
        raise SplatforgeError(f"{path} is not an image Pillow can read (unknown format, or a corrupt header)") from err
    w, h = im.size
    if max_pixels is not None and w * h > max_pixels:
        im.close()
        raise SplatforgeError(f"{path} is {w}x{h}, over the limit of {max_pixels:,} pixels; raise max_pixels if "
                              "the image is trusted")
    return im


def read_photo(path: Path, factor: int = 1, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               keep_alpha: bool = False, size: tuple[int, int] | None = None) -> np.ndarray:  # [H, W, 3|4]
    """A photo, upright, as float32 in [0, 1], shrunk by `factor` (or to `size`, (width, height)).
    With `keep_alpha`, a photo with an alpha channel comes back RGBA. Errors name the file."""
    path = Path(path)
    if factor == 1 and size is None and not keep_alpha:
        return load_image(path, max_pixels=max_pixels)
    im = _open(path, max_pixels)
    try:
        with im:
            w, h = im.size
            target = size
            if target is None:
                orientation = im.getexif().get(0x0112, 1)
                target = scaled_size((h, w) if orientation in (5, 6, 7, 8) else (w, h), factor)
            if im.format == "JPEG" and factor > 1:
                im.draft("RGB", (max(1, w // factor), max(1, h // factor)))
            im.load()
            upright = ImageOps.exif_transpose(im)
            has_alpha = upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info
            mode = "RGBA" if keep_alpha and has_alpha else "RGB"
            if upright.mode != mode:
                upright = upright.convert(mode)
            if upright.size != tuple(target):
                upright = upright.resize(tuple(target), Image.LANCZOS)
            return np.asarray(upright, dtype=np.float32) / np.float32(255.0)
    except SplatforgeError:
        raise
    except Exception as err:  # noqa: BLE001 - Pillow raises many types for corrupt data
        raise SplatforgeError(f"{path} is truncated or corrupt and cannot be decoded: {err}") from err


def composite(rgba: np.ndarray, background: tuple[float, float, float]) -> np.ndarray:  # [H,W,4] -> [H,W,3]
    """An RGBA photo over a solid background (straight alpha, as PNG stores it)."""
    if rgba.shape[-1] == 3:
        return rgba
    alpha = rgba[..., 3:4]
    return (rgba[..., :3] * alpha + np.asarray(background, np.float32) * (1.0 - alpha)).astype(np.float32)


@dataclass(frozen=True)
class Lens:
    """Lens distortion in nerfstudio's terms: model "pinhole", "opencv" or "fisheye" and k1..k4, p1, p2."""

    model: str = "pinhole"
    k1: float = 0.0
    k2: float = 0.0
    k3: float = 0.0
    k4: float = 0.0
    p1: float = 0.0
    p2: float = 0.0

    @property
    def is_distorted(self) -> bool:
        return self.model == "fisheye" or any((self.k1, self.k2, self.k3, self.k4, self.p1, self.p2))

    def distort(self, xy: np.ndarray) -> np.ndarray:  # [..., 2] normalized -> [..., 2] distorted
        x, y = xy[..., 0], xy[..., 1]
        r2 = x * x + y * y
        if self.model == "fisheye":
            r = np.sqrt(r2)
            theta = np.arctan(r)
            t2 = theta * theta
            theta_d = theta * (1.0 + t2 * (self.k1 + t2 * (self.k2 + t2 * (self.k3 + t2 * self.k4))))
            scale = np.where(r > 1e-12, theta_d / np.maximum(r, 1e-12), 1.0)
            return xy * scale[..., None]
        radial = 1.0 + r2 * (self.k1 + r2 * (self.k2 + r2 * (self.k3 + r2 * self.k4)))
        xd = x * radial + 2.0 * self.p1 * x * y + self.p2 * (r2 + 2.0 * x * x)
        yd = y * radial + self.p1 * (r2 + 2.0 * y * y) + 2.0 * self.p2 * x * y
        return np.stack([xd, yd], axis=-1)


def undistort(image: np.ndarray, K: np.ndarray, lens: Lens) -> np.ndarray:  # [H, W, C] -> [H, W, C]
    """Resample a distorted photo to the pinhole camera with the same K (bilinear, edge pixels beyond
    the photo). COLMAP's four-parameter case goes through `io.colmap.undistort_image`."""
    if not lens.is_distorted:
        return image
    h, w = image.shape[:2]
    if lens.model == "opencv" and lens.k3 == 0 and lens.k4 == 0:
        camera = ColmapCamera(0, "OPENCV", w, h, np.asarray(K, np.float64), np.array([lens.k1, lens.k2, lens.p1, lens.p2]))
        return undistort_image(image, camera)
    return remap(image, K, lens)


def remap(image: np.ndarray, K: np.ndarray, lens: Lens) -> np.ndarray:  # [H, W, C] -> [H, W, C]
    """Each pixel of the pinhole image takes the bilinear sample of `image` where `lens` sends it."""
    return remap_to_pinhole(image, K, lens.distort)


def parallel_map(fn: Callable[[_T], _R], items: list[_T]) -> list[_R]:
    """`[fn(x) for x in items]` on all cores (Pillow and numpy release the GIL); the first error in
    item order is raised."""
    workers = min(len(items), os.cpu_count() or 1)
    if workers <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))
