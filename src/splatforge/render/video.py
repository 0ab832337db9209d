"""Orbit cameras for a scene and MP4 output.

`scene_orbit` places a circle of cameras around a scene: around the point the capture's cameras
look at, in their plane and with their up direction, when cameras are known; otherwise around
the opaque Gaussians' median with a world up vector. `write_video` encodes frames with the
ffmpeg binary that the imageio-ffmpeg wheel ships (nothing is downloaded).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ..core.cameras import Z_UP, intrinsics_from_fov, orbit_path
from ..core.fsutil import atomic_write
from ..core.gaussians import Gaussians
from ..errors import SplatforgeError


def look_target(viewmats: np.ndarray) -> np.ndarray:
    """The point closest (least squares) to every camera's optical axis; viewmats [C, 4, 4]
    world-to-camera (OpenCV). Falls back to the centroid ahead of the cameras when the axes are
    parallel."""
    c2w = np.linalg.inv(viewmats)
    origins, dirs = c2w[:, :3, 3], c2w[:, :3, 2]
    dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    projectors = np.eye(3)[None] - dirs[:, :, None] * dirs[:, None, :]  # onto the plane normal to each axis
    a, b = projectors.sum(0), np.einsum("cij,cj->i", projectors, origins)
    if np.linalg.cond(a) > 1e8:
        return origins.mean(0) + dirs.mean(0)
    return np.linalg.solve(a, b)


def scene_orbit(
    n_views: int,
    width: int,
    height: int,
    *,
    gaussians: Optional[Gaussians] = None,
    capture_viewmats: Optional[np.ndarray] = None,  # [C, 4, 4] world-to-camera
    up: Optional[tuple[float, float, float]] = None,
    fov_degrees: float = 50.0,
    elevation_degrees: Optional[float] = None,
) -> tuple[Tensor, Tensor]:  # viewmats [n, 4, 4], Ks [n, 3, 3]
    """Cameras on a circle around the scene (see the module doc), all looking at its centre."""
    if n_views < 1:
        raise SplatforgeError(f"an orbit needs at least one view, got {n_views}")
    if capture_viewmats is not None and len(capture_viewmats):
        c2w = np.linalg.inv(capture_viewmats)
        center = look_target(capture_viewmats)
        offsets = c2w[:, :3, 3] - center
        radius = float(np.median(np.linalg.norm(offsets, axis=1)))
        if up is None:
            mean_up = -c2w[:, :3, 1].mean(0)  # OpenCV cameras: image y points down
            up = tuple(mean_up / max(np.linalg.norm(mean_up), 1e-12))
        if elevation_degrees is None:
            u = np.asarray(up, dtype=np.float64)
            heights = offsets @ u / np.maximum(np.linalg.norm(offsets, axis=1), 1e-12)
            elevation_degrees = float(np.degrees(np.arcsin(np.clip(np.median(heights), -0.95, 0.95))))
    elif gaussians is not None and len(gaussians):
        means = gaussians.means.detach().double().cpu()
        opaque = gaussians.activated_opacities().detach().cpu() > 0.1
        if int(opaque.sum()) >= 8:
            means = means[opaque]
        center = means.median(dim=0).values.numpy()
        extent = float(torch.quantile((means - torch.from_numpy(center)).norm(dim=1), 0.9))
        radius = max(extent, 1e-6) / math.tan(math.radians(fov_degrees) / 2) * 1.1
    else:
        raise SplatforgeError("an orbit needs the scene's Gaussians or a capture's cameras")
    viewmats = orbit_path(center, radius, n_views, elevation_degrees=20.0 if elevation_degrees is None
                          else elevation_degrees, up=up or Z_UP)
    k = intrinsics_from_fov(width, height, fov_x_degrees=fov_degrees)
    return viewmats.float(), k.float().expand(n_views, 3, 3).clone()


def _to_uint8(frame: np.ndarray) -> np.ndarray:
    if frame.dtype != np.uint8:
        frame = (np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return frame


def write_video(frames: Iterable[np.ndarray], path: str | os.PathLike, fps: int = 30) -> Path:
    """Encode [H, W, 3] frames (uint8, or floats in [0, 1]) as an H.264 MP4. Odd sizes are padded
    by a pixel (yuv420p needs even ones). The video appears under `path` only once complete
    (`atomic_write`): a failure, or no frames at all, leaves nothing behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: _encode(frames, tmp, fps, path))


def _encode(frames: Iterable[np.ndarray], tmp: Path, fps: int, path: Path) -> None:
    import imageio_ffmpeg

    writer = None
    count = 0
    try:
        for frame in frames:
            frame = _to_uint8(np.asarray(frame))
            if frame.ndim == 2:
                frame = np.repeat(frame[:, :, None], 3, axis=2)
            h, w = frame.shape[:2]
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            if writer is None:
                writer = imageio_ffmpeg.write_frames(str(tmp), (frame.shape[1], frame.shape[0]), fps=fps,
                                                     codec="libx264", pix_fmt_out="yuv420p", quality=8,
                                                     macro_block_size=1, ffmpeg_log_level="error")
                writer.send(None)
            writer.send(np.ascontiguousarray(frame))
            count += 1
    finally:
        if writer is not None:
            writer.close()
    if count == 0:
        raise SplatforgeError(f"no frames to write to {path}")
