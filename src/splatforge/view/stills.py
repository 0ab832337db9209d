"""Exact stills of what a browser client sees, rendered by splatforge's own `rasterization()`.

viser reports a client's camera as a pose (rotation `wxyz` and `position`: camera-to-world, with
OpenCV axes: x right, y down, z forward), a vertical field of view in radians and the canvas size
in pixels. `camera_from_pose` turns that into the world-to-camera `viewmat` and pinhole `K` every
splatforge renderer takes (square pixels, principal point at the image centre).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from splatforge.core.cameras import Camera, intrinsics_from_focal
from splatforge.core.gaussians import Gaussians
from splatforge.core.images import save_image
from splatforge.raster.api import rasterization

# A still is rendered on the CPU while the user waits: its longer side is capped (the browser
# canvas can be 4K on a HiDPI screen), keeping the aspect ratio and field of view.
DEFAULT_STILL_SIZE = 960


@dataclass
class Still:
    rgb: np.ndarray  # [H, W, 3] float32 in [0, 1], on the background colour
    depth: np.ndarray  # [H, W] float32 expected depth (camera z, world units); 0 where alpha is 0
    alpha: np.ndarray  # [H, W] float32 in [0, 1]
    camera: Camera


def rotation_from_wxyz(wxyz) -> np.ndarray:  # [4] -> [3, 3]
    w, x, y, z = np.asarray(wxyz, dtype=np.float64) / np.linalg.norm(wxyz)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def wxyz_from_rotation(rot: np.ndarray) -> np.ndarray:  # [3, 3] -> [4] (w >= 0)
    """Quaternion of a rotation matrix (Shepperd's method, stable for every angle)."""
    m = np.asarray(rot, dtype=np.float64)
    trace = np.trace(m)
    candidates = [trace, m[0, 0], m[1, 1], m[2, 2]]
    i = int(np.argmax(candidates))
    if i == 0:
        s = math.sqrt(1 + trace) * 2
        q = [s / 4, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        j, k = (i % 3) + 1, ((i + 1) % 3) + 1
        a, b, c = i - 1, j - 1, k - 1
        s = math.sqrt(1 + m[a, a] - m[b, b] - m[c, c]) * 2
        q = [0.0] * 4
        q[0] = (m[c, b] - m[b, c]) / s
        q[i] = s / 4
        q[j] = (m[b, a] + m[a, b]) / s
        q[k] = (m[c, a] + m[a, c]) / s
    q = np.asarray(q)
    return q if q[0] >= 0 else -q


def camera_from_pose(wxyz, position, fov_y_radians: float, width: int, height: int,
                     max_size: int | None = DEFAULT_STILL_SIZE) -> Camera:
    """The splatforge `Camera` of a viser camera (see the module doc), its image scaled down so the
    longer side is at most `max_size` pixels (None: canvas size)."""
    if not 0 < fov_y_radians < math.pi:
        raise ValueError(f"vertical field of view must be in (0, pi) radians, got {fov_y_radians}")
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if max_size is not None and max(width, height) > max_size:
        factor = max_size / max(width, height)
        width, height = max(1, round(width * factor)), max(1, round(height * factor))
    cam_to_world = np.eye(4)
    cam_to_world[:3, :3] = rotation_from_wxyz(wxyz)
    cam_to_world[:3, 3] = np.asarray(position, dtype=np.float64)
    viewmat = torch.from_numpy(np.linalg.inv(cam_to_world)).float()
    focal = height / (2.0 * math.tan(fov_y_radians / 2.0))
    return Camera(viewmat, intrinsics_from_focal(focal, width=width, height=height), int(width), int(height))


def pose_from_viewmat(viewmat) -> tuple[np.ndarray, np.ndarray]:  # [4, 4] -> wxyz [4], position [3]
    """viser's (wxyz, position) of a world-to-camera matrix, e.g. a capture's camera for a frustum."""
    cam_to_world = np.linalg.inv(np.asarray(viewmat, dtype=np.float64))
    return wxyz_from_rotation(cam_to_world[:3, :3]), cam_to_world[:3, 3]


def render_still(gaussians: Gaussians, camera: Camera, background=(1.0, 1.0, 1.0),
                 backend: str = "auto") -> Still:
    """RGB, expected depth and alpha of `gaussians` seen by `camera`, in one `rasterization()` call
    with the Gaussians' full SH degree."""
    g = gaussians.detach()
    viewmats = camera.viewmat.to(g.device, g.dtype)[None]
    ks = camera.K.to(g.device, g.dtype)[None]
    bg = torch.tensor(background, dtype=g.dtype, device=g.device)[None]
    colors, alphas, _ = rasterization(
        **g.rasterization_args(), viewmats=viewmats, Ks=ks, width=camera.width, height=camera.height,
        render_mode="RGB+ED", backgrounds=bg, backend=backend)
    colors = colors[0].cpu().numpy()
    alpha = alphas[0, ..., 0].cpu().numpy()
    depth = np.where(alpha > 0, colors[..., 3], 0.0).astype(np.float32)
    return Still(np.clip(colors[..., :3], 0.0, 1.0), depth, alpha, camera)


def depth_image(depth: np.ndarray, alpha: np.ndarray) -> np.ndarray:  # [H, W] -> [H, W, 3] float32
    """Depth as a grey ramp (near white, far black) over the covered pixels' 1-99 percentile range;
    uncovered pixels are black."""
    covered = alpha > 1e-3
    out = np.zeros(depth.shape, dtype=np.float32)
    if covered.any():
        near, far = np.percentile(depth[covered], [1, 99])
        out = np.clip((far - depth) / max(far - near, 1e-9), 0.0, 1.0)
        out = np.where(covered, 0.1 + 0.9 * out, 0.0).astype(np.float32)
    return np.repeat(out[..., None], 3, axis=2)


def still_image(still: Still, channel: str) -> np.ndarray:  # [H, W, 3] float32
    """The picture of one channel: "RGB", "depth" or "alpha"."""
    if channel == "RGB":
        return still.rgb
    if channel == "depth":
        return depth_image(still.depth, still.alpha)
    if channel == "alpha":
        return np.repeat(still.alpha[..., None], 3, axis=2).astype(np.float32)
    raise ValueError(f"channel must be RGB, depth or alpha, got {channel!r}")


def save_still(still: Still, folder: str | os.PathLike, stem: str) -> list[Path]:
    """Write `stem`_rgb.png, `stem`_depth.png (grey ramp) and `stem`_alpha.png into `folder`, and
    `stem`_depth.npy with the metric depth; returns the paths."""
    folder = Path(folder)
    paths = [save_image(folder / f"{stem}_{name}.png", still_image(still, name_key))
             for name, name_key in (("rgb", "RGB"), ("depth", "depth"), ("alpha", "alpha"))]
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{stem}_depth.npy", still.depth)
    return paths + [folder / f"{stem}_depth.npy"]
