"""Novel-view videos of a prediction along ml-sharp's "rotate_forward" trajectory, on the CPU.

The eye moves on x and z: x = a sin(2 pi t), z = b (1 - cos(2 pi t)) / 2 for t in [0, 1], with
a = 0.08 * (image diagonal / f) * near depth (the 0.1% depth quantile) and b = 0.15 * near depth,
always looking at the point max(2 m, 10% depth quantile) ahead of the original camera, y down.
Colours are rendered as stored in the PLY (sRGB); depth is the expected depth, colour-mapped.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from splatforge.core.cameras import look_at
from splatforge.errors import SplatforgeError
from splatforge.raster import rasterization
from splatforge.render.video import write_video

from .api import Prediction


@dataclass
class TrajectoryParams:
    """ml-sharp's defaults (TrajectoryParams, rotate_forward), plus a render size cap."""

    max_disparity: float = 0.08
    max_zoom: float = 0.15
    num_steps: int = 60
    fps: int = 30
    max_side: int = 640  # frames are rendered at most this large (CPU time)


def trajectory_viewmats(prediction: Prediction, params: TrajectoryParams) -> torch.Tensor:
    """[num_steps, 4, 4] world-to-camera matrices of the forward-moving trajectory."""
    z = prediction.means[:, 2].float()
    z = z[z > 0]
    if z.numel() == 0:
        raise SplatforgeError("nothing to render: no Gaussian is in front of the camera")
    sample = z[torch.randperm(z.numel(), generator=torch.Generator().manual_seed(0))[:1_000_000]]
    near, focus = torch.quantile(sample, torch.tensor([0.001, 0.1])).tolist()
    width, height = prediction.image_size
    f = prediction.focal_length_px
    lateral = params.max_disparity * math.hypot(width / f, height / f) * near
    medial = params.max_zoom * near
    target = torch.tensor([0.0, 0.0, max(2.0, focus)])
    views = []
    for t in np.linspace(0.0, 1.0, params.num_steps):
        eye = torch.tensor([lateral * math.sin(2 * math.pi * t), 0.0,
                            medial * (1 - math.cos(2 * math.pi * t)) / 2], dtype=torch.float32)
        views.append(look_at(eye, target, up=(0.0, -1.0, 0.0)))  # OpenCV world: y down
    return torch.stack(views)


def _colorize_depth(depth: np.ndarray, max_depth: float) -> np.ndarray:
    import matplotlib

    normalized = np.clip(depth / max(max_depth, 1e-6), 0.0, 1.0)
    return (matplotlib.colormaps["turbo"](1.0 - normalized)[..., :3] * 255).astype(np.uint8)


def render_trajectory_frames(prediction: Prediction, params: TrajectoryParams | None = None
                             ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Colour frames [h, w, 3] in [0, 1] and expected-depth maps [h, w] along the trajectory."""
    params = params or TrajectoryParams()
    width, height = prediction.image_size
    scale = min(1.0, params.max_side / max(width, height))
    w, h = max(2, round(width * scale)), max(2, round(height * scale))
    f = prediction.focal_length_px
    k = torch.tensor([[f * w / width, 0, w / 2], [0, f * h / height, h / 2], [0, 0, 1]],
                     dtype=torch.float32)
    means = prediction.means.float()
    quats = torch.nn.functional.normalize(prediction.quats.float(), dim=-1)
    scales, opacities = prediction.scales.float(), prediction.opacities.float()
    colors = prediction.srgb_colors().float().clamp(0, 1)
    frames, depths = [], []
    for view in trajectory_viewmats(prediction, params):
        out, _, _ = rasterization(means, quats, scales, opacities, colors, view[None], k[None],
                                  w, h, render_mode="RGB+ED", backend="cpu")
        frames.append(out[0, ..., :3].clamp(0, 1).numpy())
        depths.append(out[0, ..., 3].numpy())
    return frames, depths


def render_trajectory_videos(prediction: Prediction, path: str | os.PathLike,
                             params: TrajectoryParams | None = None) -> tuple[Path, Path]:
    """Write `path` (colour MP4) and `<stem>.depth.mp4`; returns both paths."""
    params = params or TrajectoryParams()
    path = Path(path)
    frames, depths = render_trajectory_frames(prediction, params)
    valid = depths[0][depths[0] > 0]
    max_depth = float(np.quantile(valid, 0.99)) if valid.size else 1.0
    depth_path = path.with_name(path.stem + ".depth.mp4")
    write_video(frames, path, fps=params.fps)
    write_video((_colorize_depth(d, max_depth) for d in depths), depth_path, fps=params.fps)
    return path, depth_path
