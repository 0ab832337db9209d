"""Point captures in .npz: a coloured point cloud and the cameras that saw it.

Keys: `means3d [N, 3] f32`, `colors [N, 3] u8` (or floats in [0, 1]), `viewmats [C, 4, 4]`
(world-to-camera, OpenCV), `Ks [C, 3, 3]`, `width`, `height`. ../shared/data/test_garden.npz (the
Mip-NeRF 360 garden's SfM points and three of its cameras) is one.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..core.gaussians import Gaussians
from ..errors import FormatError, SplatforgeError

REQUIRED_KEYS = ("means3d", "colors", "viewmats", "Ks", "width", "height")


@dataclass
class PointCapture:
    points: Tensor  # [N, 3]
    colors: Tensor  # [N, 3] in [0, 1]
    viewmats: Tensor  # [C, 4, 4]
    Ks: Tensor  # [C, 3, 3]
    width: int
    height: int

    def to_gaussians(self, opacity: float = 0.8, sh_degree: int = 0) -> Gaussians:
        """Isotropic Gaussians at the points, sized by the mean distance to their 3 nearest neighbours."""
        return Gaussians.from_points(self.points, self.colors, sh_degree=sh_degree, opacity=opacity)


def load_point_capture(path: str | os.PathLike) -> PointCapture:
    """Read a point capture, checking every key's shape; errors name the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise SplatforgeError(f"{path}: no such file (a point capture .npz with {', '.join(REQUIRED_KEYS)})")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in REQUIRED_KEYS if k not in data.files]
            if missing:
                raise FormatError(f"{path}: missing keys {missing}; a point capture needs {list(REQUIRED_KEYS)}")
            arrays = {k: data[k] for k in REQUIRED_KEYS}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        if isinstance(exc, FormatError):
            raise
        raise FormatError(f"{path}: not a readable .npz file ({exc})") from exc
    points, colors = arrays["means3d"], arrays["colors"]
    viewmats, ks = arrays["viewmats"], arrays["Ks"]
    n, c = points.shape[0] if points.ndim == 2 else -1, viewmats.shape[0] if viewmats.ndim == 3 else -1
    checks = [("means3d", points, (n, 3)), ("colors", colors, (n, 3)), ("viewmats", viewmats, (c, 4, 4)),
              ("Ks", ks, (c, 3, 3))]
    for name, arr, shape in checks:
        if n < 0 or c < 1 or arr.shape != shape:
            raise FormatError(f"{path}: {name} has shape {arr.shape}, expected {shape}")
    width, height = int(arrays["width"]), int(arrays["height"])
    if width <= 0 or height <= 0:
        raise FormatError(f"{path}: image size {width}x{height} is not positive")
    colors_f = colors.astype(np.float32) / 255.0 if colors.dtype == np.uint8 else colors.astype(np.float32)
    for name, arr in (("means3d", points), ("colors", colors_f), ("viewmats", viewmats), ("Ks", ks)):
        if not np.isfinite(arr).all():
            raise FormatError(f"{path}: {name} holds NaN or inf values")
    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return PointCapture(as_t(points), as_t(colors_f), as_t(viewmats), as_t(ks), width, height)
