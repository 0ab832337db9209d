"""COLMAP captures: `root/sparse/0` (or `root/sparse`, binary or text) and the photos in `root/images`.

With a downscale factor N (given, or from the long-side rule in `photos`), photos come from
`root/images_N` when that folder exists (or `root/images_N_cache` from an earlier run); otherwise they
are resized as they are read. Only an explicit `downscale` caches them in `root/images_N_cache`, as
before (the only place a loader writes into a capture): the long-side rule alone never writes into the
user's folder, and reading a 12 MP JPEG at reduced size costs about 0.2 s. A distorted camera's photo is
read once at full size, undistorted with its full-size lens model, then resized.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import SplatforgeError
from ..io.colmap import ColmapCamera, read_colmap_model, undistort_image
from .photos import DEFAULT_LONG_SIDE, parallel_map, read_photo, training_downscale
from .types import LoadedFrame


def _image_folder(root: Path, downscale: int) -> tuple[Path, bool]:
    """The folder to read photos from, and whether they still need resizing."""
    if downscale == 1:
        return root / "images", False
    ready = root / f"images_{downscale}"
    return (ready, False) if ready.is_dir() else (root / "images", True)


def _missing(path: Path) -> SplatforgeError:
    return SplatforgeError(f"{path}: listed in the COLMAP model but missing on disk")


def _resized(photo: np.ndarray, size: tuple[int, int]) -> Image.Image:
    return Image.fromarray((photo * 255 + 0.5).astype(np.uint8)).resize(size, Image.LANCZOS)


def _read_photo(root: Path, name: str, downscale: int, max_pixels: int | None, cache: bool = True) -> np.ndarray:
    folder, resize = _image_folder(root, downscale)
    cached = root / f"images_{downscale}_cache" / (name + ".png")
    if resize and cached.is_file():
        return read_photo(cached, max_pixels=max_pixels)
    path = folder / name
    if not path.is_file():
        raise _missing(path)
    if not resize:
        return read_photo(path, max_pixels=max_pixels)
    small = read_photo(path, downscale, max_pixels=max_pixels)
    if not cache:
        return small
    cached.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((small * 255 + 0.5).astype(np.uint8)).save(cached)
    return small


def _read_undistorted(root: Path, name: str, camera: ColmapCamera, downscale: int,
                      max_pixels: int | None) -> np.ndarray:
    """A distorted camera's photo, undistorted, at 1/downscale. The lens model is for the full-size
    photo, so that is read (once) and undistorted, then resized to the size `images_N/` has for it
    (its header only) or, without that folder, to the size `_read_photo` would make."""
    path = root / "images" / name
    if not path.is_file():
        raise _missing(path)
    photo = read_photo(path, max_pixels=max_pixels)
    h, w = photo.shape[:2]
    if (w, h) != (camera.width, camera.height):
        raise SplatforgeError(_size_message(path, w, h, camera, 1))
    photo = undistort_image(photo, camera)
    if downscale == 1:
        return photo
    folder, resize = _image_folder(root, downscale)
    if resize:
        size = (max(1, round(w / downscale)), max(1, round(h / downscale)))
    else:
        if not (folder / name).is_file():
            raise _missing(folder / name)
        with Image.open(folder / name) as small:
            size = small.size
    return np.asarray(_resized(photo, size), dtype=np.float32) / 255.0


def _size_message(name, w: int, h: int, camera: ColmapCamera, downscale: int) -> str:
    message = (f"{name} is {w}x{h}, but camera {camera.camera_id} is {camera.width}x{camera.height}"
               + (f" (downscaled by {downscale})" if downscale > 1 else ""))
    if abs(w * downscale - camera.height) <= downscale and abs(h * downscale - camera.width) <= downscale:
        message += ("; the photo carries an EXIF rotation the model was not made with: re-run SfM on upright "
                    "photos (splatforge capture writes them)")
    return message


def read_colmap_capture(root: Path, downscale: int | None = None, long_side_limit: int = DEFAULT_LONG_SIDE,
                        max_pixels: int | None = 64_000_000):
    """(frames, points, colors) of a COLMAP capture, in COLMAP's world frame. Errors name the file or camera."""
    model = read_colmap_model(root)
    factor = training_downscale([(model.cameras[im.camera_id].width, model.cameras[im.camera_id].height)
                                 for im in model.images], downscale, long_side_limit)

    def load(im) -> LoadedFrame:
        camera = model.cameras[im.camera_id]
        if camera.is_distorted:
            photo = _read_undistorted(root, im.name, camera, factor, max_pixels)
        else:
            photo = _read_photo(root, im.name, factor, max_pixels, cache=downscale is not None)
        h, w = photo.shape[:2]
        sx, sy = w / camera.width, h / camera.height
        if abs(sx - 1.0 / factor) > 0.02 or abs(sy - 1.0 / factor) > 0.02:
            raise SplatforgeError(_size_message(im.name, w, h, camera, factor))
        k = camera.K.copy()
        k[0] *= sx
        k[1] *= sy
        return LoadedFrame(im.name, photo.astype(np.float32, copy=False), k, im.viewmat, (Path(im.name).name,))

    frames = parallel_map(load, model.images)
    return frames, model.points, model.colors
