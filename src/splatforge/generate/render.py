"""Turntable videos of a generated object with splatforge's CPU rasterizer, as LGM's infer.py
renders them: cameras on LGM's orbit (elevation 0, radius 1.5, vertical fov 49.1 degrees),
azimuth stepping 360 degrees over the video, white background."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from splatforge.core.cameras import intrinsics_from_fov
from splatforge.raster import rasterization
from splatforge.render.video import write_video

from .api import Generation
from .lgm.cameras import opencv_viewmat, orbit_camera_to_world


@dataclass
class TurntableParams:
    """LGM's video: 180 frames (2 degrees apart) at 30 fps; 512 pixels is the "big" model's
    render size."""

    num_frames: int = 180
    size: int = 512  # frames are size x size pixels
    fps: int = 30
    elevation: float = 0.0  # degrees, positive looks down from above
    radius: float = 1.5
    fovy: float = 49.1


def turntable_viewmats(params: TurntableParams) -> torch.Tensor:  # [num_frames, 4, 4] OpenCV
    azimuths = np.linspace(0.0, 360.0, params.num_frames, endpoint=False)
    return torch.stack([opencv_viewmat(orbit_camera_to_world(-params.elevation, float(a), params.radius))
                        for a in azimuths])


def turntable_frames(generation: Generation, params: TurntableParams | None = None) -> Iterator[np.ndarray]:
    """[size, size, 3] frames in [0, 1], one per azimuth, rendered lazily."""
    params = params or TurntableParams()
    k = intrinsics_from_fov(params.size, params.size, fov_y_degrees=params.fovy)[None]
    white = torch.ones(1, 3)
    for view in turntable_viewmats(params):
        out, _, _ = rasterization(generation.means, generation.quats, generation.scales, generation.opacities,
                                  generation.colors, view[None], k, params.size, params.size,
                                  backgrounds=white, backend="cpu")
        yield out[0].clamp(0, 1).numpy()


def render_turntable(generation: Generation, path: str | os.PathLike,
                     params: TurntableParams | None = None) -> Path:
    """Write the turntable MP4 (atomically: nothing is left behind on failure); returns its path."""
    params = params or TurntableParams()
    return write_video(turntable_frames(generation, params), path, fps=params.fps)
