"""COLMAP sparse models (binary or text, read through pycolmap) and lens undistortion.

`read_colmap_model(root)` finds the model (`root/sparse/0`, `root/sparse` or `root` itself),
reads its cameras, registered images and 3D points, and returns them in this project's
conventions: world-to-camera `viewmat`s (OpenCV axes, as COLMAP's), intrinsics `K` and OpenCV-order
distortion coefficients (k1, k2, p1, p2). `undistort_image` resamples a photo to the pinhole camera
with the same intrinsics, so the rasterizer (which knows no distortion) can be trained on it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import FormatError, SplatforgeError

# model name -> how its parameters map to (fx, fy, cx, cy, k1, k2, p1, p2)
SUPPORTED_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")


@dataclass
class ColmapCamera:
    camera_id: int
    model: str
    width: int
    height: int
    K: np.ndarray  # [3, 3] float64
    dist: np.ndarray  # [4] float64, OpenCV order (k1, k2, p1, p2); zeros for pinhole models

    @property
    def is_distorted(self) -> bool:
        return bool(np.any(self.dist != 0))


@dataclass
class ColmapImage:
    image_id: int
    name: str  # path relative to the images folder
    camera_id: int
    viewmat: np.ndarray  # [4, 4] float64 world-to-camera


@dataclass
class ColmapModel:
    path: Path
    cameras: dict[int, ColmapCamera]
    images: list[ColmapImage]  # registered images, sorted by name
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # [N, 3] float64
    colors: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.uint8))  # [N, 3] uint8


def find_sparse_dir(root: str | os.PathLike) -> Path:
    """The folder holding cameras/images/points3D (.bin or .txt) under a capture's root."""
    root = Path(root)
    for candidate in (root / "sparse" / "0", root / "sparse", root):
        if any((candidate / f"cameras.{ext}").is_file() for ext in ("bin", "txt")):
            return candidate
    raise SplatforgeError(
        f"{root}: no COLMAP model found (looked for cameras.bin or cameras.txt in sparse/0, sparse and "
        f"the folder itself); run COLMAP's mapper first"
    )


def _camera_from_params(camera_id: int, model: str, width: int, height: int, params: np.ndarray) -> ColmapCamera:
    p = [float(v) for v in params]
    dist = np.zeros(4)
    if model == "SIMPLE_PINHOLE":
        fx = fy = p[0]
        cx, cy = p[1], p[2]
    elif model == "PINHOLE":
        fx, fy, cx, cy = p[:4]
    elif model == "SIMPLE_RADIAL":
        fx = fy = p[0]
        cx, cy, dist[0] = p[1], p[2], p[3]
    elif model == "RADIAL":
        fx = fy = p[0]
        cx, cy, dist[0], dist[1] = p[1], p[2], p[3], p[4]
    elif model == "OPENCV":
        fx, fy, cx, cy = p[:4]
        dist[:] = p[4:8]
    else:
        raise SplatforgeError(
            f"camera {camera_id} uses the {model} model; supported: {', '.join(SUPPORTED_MODELS)} "
            f"(undistort the capture with COLMAP's image_undistorter first)"
        )
    k = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return ColmapCamera(camera_id, model, int(width), int(height), k, dist)


def read_colmap_model(root: str | os.PathLike) -> ColmapModel:
    """Read a COLMAP model (binary or text) under `root`; errors name the file or the camera."""
    try:
        import pycolmap
    except ImportError as exc:  # pragma: no cover - pycolmap is a dependency
        raise SplatforgeError("reading COLMAP models needs pycolmap: pip install pycolmap") from exc
    path = find_sparse_dir(root)
    try:
        rec = pycolmap.Reconstruction(str(path))
    except Exception as exc:  # pycolmap raises its own types for truncated or malformed files
        raise FormatError(f"{path}: not a readable COLMAP model ({exc})") from exc
    cameras = {
        cid: _camera_from_params(cid, cam.model.name, cam.width, cam.height, np.asarray(cam.params))
        for cid, cam in rec.cameras.items()
    }
    images = []
    for iid, im in rec.images.items():
        if not im.has_pose:
            continue
        viewmat = np.eye(4)
        pose = im.cam_from_world() if callable(im.cam_from_world) else im.cam_from_world  # a method since 3.12
        viewmat[:3, :] = np.asarray(pose.matrix())
        images.append(ColmapImage(int(iid), im.name, int(im.camera_id), viewmat))
    if not images:
        raise SplatforgeError(f"{path}: the model has no registered images")
    images.sort(key=lambda i: i.name)
    if rec.num_points3D():
        pts = list(rec.points3D.values())
        points = np.array([p.xyz for p in pts], dtype=np.float64)
        colors = np.array([p.color for p in pts], dtype=np.uint8)
    else:
        points, colors = np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    return ColmapModel(path, cameras, images, points, colors)


def distort_points(xy: np.ndarray, dist: np.ndarray) -> np.ndarray:  # [..., 2] normalized -> [..., 2]
    """OpenCV's radial-tangential model (k1, k2, p1, p2) applied to normalized image coordinates."""
    k1, k2, p1, p2 = dist
    x, y = xy[..., 0], xy[..., 1]
    r2 = x * x + y * y
    radial = 1.0 + k1 * r2 + k2 * r2 * r2
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    return np.stack([xd, yd], axis=-1)


def undistort_image(image: np.ndarray, camera: ColmapCamera) -> np.ndarray:  # [H, W, C] -> [H, W, C]
    """Resample a distorted photo to the pinhole camera with the same K (bilinear; pixels whose
    source falls outside the photo take the nearest edge pixel)."""
    if not camera.is_distorted:
        return image
    h, w = image.shape[:2]
    if (w, h) != (camera.width, camera.height):
        raise SplatforgeError(
            f"image is {w}x{h} but camera {camera.camera_id} is {camera.width}x{camera.height}")
    return remap_to_pinhole(image, camera.K, lambda normalized: distort_points(normalized, camera.dist))


def remap_to_pinhole(image: np.ndarray, K: np.ndarray,  # [H, W, C], [3, 3]
                     distort: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:  # [H, W, C]
    """Each pixel of the pinhole image with intrinsics K takes the bilinear sample of `image` where
    `distort` ([..., 2] normalized image coordinates -> distorted ones) sends it; sources outside the
    photo take the nearest edge pixel."""
    h, w = image.shape[:2]
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float64) + 0.5, np.arange(w, dtype=np.float64) + 0.5, indexing="ij")
    normalized = np.stack([(xs - K[0, 2]) / K[0, 0], (ys - K[1, 2]) / K[1, 1]], axis=-1)
    src = distort(normalized)
    sx = np.clip(src[..., 0] * K[0, 0] + K[0, 2] - 0.5, 0, w - 1)  # pixel-centre convention -> array index
    sy = np.clip(src[..., 1] * K[1, 1] + K[1, 2] - 0.5, 0, h - 1)
    x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    img = image.astype(np.float32, copy=False)
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(image.dtype, copy=False)
