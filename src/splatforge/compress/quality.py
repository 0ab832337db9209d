"""What compression costs in pixels: PSNR / SSIM between renders of two scenes from orbit views."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from splatforge.core.cameras import intrinsics_from_fov, orbit_path
from splatforge.core.gaussians import Gaussians
from splatforge.core.metrics import psnr, ssim
from splatforge.raster import rasterization


@dataclass
class QualityReport:
    psnr: float  # dB, mean over views (inf when every view is identical)
    ssim: float  # mean over views
    views: int
    width: int
    height: int


def orbit_cameras(gaussians: Gaussians, n_views: int = 8, width: int = 320, height: int = 240,
                  fov_degrees: float = 60.0) -> tuple[Tensor, Tensor]:  # [C, 4, 4], [C, 3, 3]
    """Cameras on a circle around the scene, looking at its median point.

    The orbit's axis is the direction in which the Gaussians spread least (the vertical of most
    captured scenes); its radius is twice the median distance of the Gaussians from the centre,
    so the bulk of the scene fills the view whatever its units.
    """
    means = gaussians.means.detach().to("cpu", torch.float64)
    if len(means) == 0:
        center, up, radius = torch.zeros(3, dtype=torch.float64), torch.tensor([0.0, 0.0, 1.0]), 1.0
    else:
        center = means.median(0).values
        offsets = means - center
        sample = offsets[:: max(1, len(offsets) // 100_000)]
        up = torch.linalg.eigh(sample.T @ sample)[1][:, 0] if len(sample) > 3 else torch.tensor([0.0, 0.0, 1.0])
        radius = 2.0 * float(offsets.norm(dim=1).median())
        radius = radius if math.isfinite(radius) and radius > 0 else 1.0
    viewmats = orbit_path(center, radius, n_views, elevation_degrees=25.0, up=up)
    ks = intrinsics_from_fov(width, height, fov_x_degrees=fov_degrees).expand(n_views, 3, 3)
    return viewmats.float(), ks.float()


@torch.no_grad()
def render_views(gaussians: Gaussians, viewmats: Tensor, Ks: Tensor, width: int, height: int) -> Tensor:
    """[C, H, W, 3] renders on a black background (colours clamped to [0, 1])."""
    g = gaussians.to("cpu", torch.float32)
    if len(g) == 0:
        return torch.zeros((len(viewmats), height, width, 3))
    images = []
    for i in range(len(viewmats)):  # one view at a time keeps memory flat for large scenes
        rgb, _, _ = rasterization(**g.rasterization_args(), viewmats=viewmats[i:i + 1], Ks=Ks[i:i + 1],
                                  width=width, height=height)
        images.append(rgb[0].clamp(0, 1))
    return torch.stack(images)


def compare_scenes(original: Gaussians, decoded: Gaussians, n_views: int = 8, width: int = 320,
                   height: int = 240) -> QualityReport:
    """PSNR / SSIM of `decoded` against `original`, rendered from the same `n_views` orbit views
    (the cameras come from `original`)."""
    viewmats, ks = orbit_cameras(original, n_views, width, height)
    a = render_views(original, viewmats, ks, width, height)
    b = render_views(decoded, viewmats, ks, width, height)
    psnrs = [psnr(b[i], a[i]) for i in range(n_views)]
    ssims = [float(ssim(b[i], a[i])) for i in range(n_views)]
    return QualityReport(psnr=float(np.mean(psnrs)), ssim=float(np.mean(ssims)), views=n_views, width=width,
                         height=height)
