"""A posed capture for training: COLMAP model + photos, split into train and test views.

`load_capture(root)` reads `root/sparse/0` (binary or text) and the photos in `root/images`
(`root/images_N` when a downscale factor N is asked for and that folder exists; otherwise the
photos are resized once and cached there), undistorts photos of distorted cameras, and holds out
every 8th image by name (or the names in a test list) as the test set, as gsplat and INRIA do.

`normalization` is a similarity transform (translation and uniform scale) that centres the
cameras at the origin and scales them to unit radius.
Training runs in that frame; `Capture.world_from_normalized` maps results back, so exported scenes
line up with the user's own cameras and data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..core.images import load_image
from ..errors import SplatforgeError
from ..io.colmap import ColmapModel, read_colmap_model, undistort_image


@dataclass
class View:
    name: str
    image: np.ndarray  # [H, W, 3] float32 in [0, 1], undistorted
    K: np.ndarray  # [3, 3] float64, for this (possibly downscaled) image
    viewmat: np.ndarray  # [4, 4] float64 world-to-camera, in the normalized frame


@dataclass
class Capture:
    train: list[View]
    test: list[View]
    points: np.ndarray  # [N, 3] float64, normalized frame
    colors: np.ndarray  # [N, 3] uint8
    normalization: np.ndarray  # [4, 4] similarity: normalized = normalization @ world
    model: ColmapModel

    @property
    def world_from_normalized(self) -> np.ndarray:
        return np.linalg.inv(self.normalization)

    def model_viewmats(self) -> np.ndarray:  # [C, 4, 4]
        """World-to-camera matrices of every image, in the capture's own frame."""
        return np.stack([im.viewmat for im in self.model.images])


def similarity_normalization(camera_centers: np.ndarray) -> np.ndarray:  # [C, 3] -> [4, 4]
    """Translate the cameras' centroid to the origin and scale their largest distance from it to 1.

    No rotation, on purpose: a rotated frame would force rotating every Gaussian's view-dependent
    SH coefficients (Wigner matrices) when the scene is exported back to the capture's frame;
    translation and uniform scale leave SH, quaternions and directions unchanged."""
    center = camera_centers.mean(axis=0)
    radius = np.linalg.norm(camera_centers - center, axis=1).max()
    scale = 1.0 / radius if radius > 0 else 1.0
    transform = np.eye(4)
    transform[:3, :3] *= scale
    transform[:3, 3] = -scale * center
    return transform


def _image_folder(root: Path, downscale: int) -> tuple[Path, bool]:
    """The folder to read photos from, and whether they still need resizing."""
    if downscale == 1:
        return root / "images", False
    ready = root / f"images_{downscale}"
    return (ready, False) if ready.is_dir() else (root / "images", True)


def _read_photo(root: Path, name: str, downscale: int, max_pixels: int | None) -> np.ndarray:
    folder, resize = _image_folder(root, downscale)
    cached = root / f"images_{downscale}_cache" / (name + ".png")
    if resize and cached.is_file():
        return load_image(cached, max_pixels=max_pixels)
    path = folder / name
    if not path.is_file():
        raise SplatforgeError(f"{path}: listed in the COLMAP model but missing on disk")
    photo = load_image(path, max_pixels=max_pixels)
    if not resize:
        return photo
    h, w = photo.shape[:2]
    small = _resized(photo, (max(1, round(w / downscale)), max(1, round(h / downscale))))
    cached.parent.mkdir(parents=True, exist_ok=True)
    small.save(cached)
    return np.asarray(small, dtype=np.float32) / 255.0


def _resized(photo: np.ndarray, size: tuple[int, int]) -> Image.Image:
    return Image.fromarray((photo * 255 + 0.5).astype(np.uint8)).resize(size, Image.LANCZOS)


def _read_undistorted(root: Path, name: str, camera, downscale: int, max_pixels: int | None) -> np.ndarray:
    """A distorted camera's photo, undistorted, at 1/downscale. The lens model is for the full-size
    photo, so that is read (once) and undistorted, then resized to the size `images_N/` has for it
    (its header only) or, without that folder, to the size `_read_photo` would make."""
    path = root / "images" / name
    if not path.is_file():
        raise SplatforgeError(f"{path}: listed in the COLMAP model but missing on disk")
    photo = load_image(path, max_pixels=max_pixels)
    h, w = photo.shape[:2]
    if (w, h) != (camera.width, camera.height):
        raise SplatforgeError(f"{path} is {w}x{h}, but camera {camera.camera_id} is {camera.width}x{camera.height}")
    photo = undistort_image(photo, camera)
    if downscale == 1:
        return photo
    folder, resize = _image_folder(root, downscale)
    if resize:
        size = (max(1, round(w / downscale)), max(1, round(h / downscale)))
    else:
        if not (folder / name).is_file():
            raise SplatforgeError(f"{folder / name}: listed in the COLMAP model but missing on disk")
        with Image.open(folder / name) as small:
            size = small.size
    return np.asarray(_resized(photo, size), dtype=np.float32) / 255.0


def load_capture(
    root: str | os.PathLike,
    downscale: int = 1,
    test_every: int = 8,
    test_list: list[str] | None = None,
    normalize: bool = True,
    max_pixels: int | None = 64_000_000,
) -> Capture:
    """Read a COLMAP capture for training (see the module doc). Errors name the file or camera."""
    root = Path(root)
    if downscale < 1:
        raise SplatforgeError(f"downscale must be >= 1, got {downscale}")
    model = read_colmap_model(root)
    viewmats = np.stack([im.viewmat for im in model.images])
    centers = np.stack([np.linalg.inv(v)[:3, 3] for v in viewmats])
    norm = similarity_normalization(centers) if normalize else np.eye(4)
    world_from_norm = np.linalg.inv(norm)
    test_names = set(test_list) if test_list is not None else None
    if test_names is not None:
        unknown = test_names - {im.name for im in model.images}
        if unknown:
            raise SplatforgeError(f"test list names images the model does not have: {sorted(unknown)[:5]}")
    train, test = [], []
    size = None
    for index, im in enumerate(model.images):
        camera = model.cameras[im.camera_id]
        if camera.is_distorted:
            photo = _read_undistorted(root, im.name, camera, downscale, max_pixels)
        else:
            photo = _read_photo(root, im.name, downscale, max_pixels)
        h, w = photo.shape[:2]
        sx, sy = w / camera.width, h / camera.height
        if abs(sx - 1.0 / downscale) > 0.02 or abs(sy - 1.0 / downscale) > 0.02:
            raise SplatforgeError(
                f"{im.name} is {w}x{h}, but camera {camera.camera_id} is {camera.width}x{camera.height}"
                + (f" (downscaled by {downscale})" if downscale > 1 else ""))
        if size is not None and size != (w, h):
            raise SplatforgeError(f"{im.name} is {w}x{h} but earlier images are {size[0]}x{size[1]}; "
                                  "images of mixed sizes are not supported")
        size = (w, h)
        k = camera.K.copy()
        k[0] *= sx
        k[1] *= sy
        # world-to-camera in the normalized frame; scaling camera space by the similarity's scale
        # keeps the matrix rigid and changes no pixel (projection divides by depth)
        viewmat = im.viewmat @ world_from_norm
        viewmat[:3] *= np.cbrt(np.linalg.det(norm[:3, :3]))
        view = View(im.name, photo.astype(np.float32), k, viewmat)
        held_out = im.name in test_names if test_names is not None else (test_every > 0 and index % test_every == 0)
        (test if held_out else train).append(view)
    if not train:
        raise SplatforgeError("every image is in the test set; nothing is left to train on")
    points = (model.points @ norm[:3, :3].T + norm[:3, 3]) if len(model.points) else model.points
    return Capture(train, test, points, model.colors, norm, model)
