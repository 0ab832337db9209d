"""Render a scene from given cameras to PNGs, timing each view."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..core.gaussians import Gaussians
from ..core.images import save_image
from ..raster import rasterization


@dataclass
class RenderReport:
    paths: list[Path] = field(default_factory=list)
    milliseconds: list[float] = field(default_factory=list)  # per view, the rasterization call alone


@torch.no_grad()
def render_views(
    gaussians: Gaussians,
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    out_dir: str | os.PathLike,
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    backend: str = "auto",
    warmup: bool = True,
) -> RenderReport:
    """Render each camera to `out_dir/view_###.png`; the first call also compiles the kernels
    (cached on disk afterwards), so `warmup` renders once untimed."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    args = dict(**gaussians.rasterization_args(), width=width, height=height, backend=backend)
    report = RenderReport()
    for i in range(viewmats.shape[0]):
        bg = torch.tensor([background], dtype=gaussians.dtype)
        cam = dict(viewmats=viewmats[i:i + 1], Ks=Ks[i:i + 1], backgrounds=bg)
        if warmup and i == 0:
            rasterization(**args, **cam)
        start = time.perf_counter()
        rgb, _, _ = rasterization(**args, **cam)
        report.milliseconds.append(1000.0 * (time.perf_counter() - start))
        path = out_dir / f"view_{i:03d}.png"
        save_image(path, rgb[0].clamp(0, 1).cpu().numpy())
        report.paths.append(path)
    return report
