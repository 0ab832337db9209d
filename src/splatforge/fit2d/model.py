"""2D Gaussians that represent an image, and their renderer.

Coordinates are resolution-free: a position (u, v) is in units of the image height, so (0, 0) is
the top-left corner and (width/height, 1) the bottom-right one; scales are standard deviations in
the same unit. Rendering at height H multiplies both by H, so one fit renders at any resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..raster import isect_tiles, rasterize_to_pixels
from ..raster.reference import composite_reference
from .screen import screen_space_fused

FIELDS = ("means", "log_scales", "rotations", "colors", "opacity_logits", "depths")
BLENDS = ("alpha", "sum")


@dataclass(eq=False)
class Gaussians2D:
    """N 2D Gaussians, pre-activation.

    Attributes:
        means: centres (u, v), units of the image height.  # [N, 2]
        log_scales: log standard deviations along the Gaussian's own axes.  # [N, 2]
        rotations: angle of the first axis from +x, radians.  # [N]
        colors: RGB, unbounded while fitting (renders are clipped to [0, 1] when saved).  # [N, 3]
        opacity_logits: logit of the opacity.  # [N]
        depths: compositing order for blend="alpha" (smaller is in front); fixed, not optimized.  # [N]
    """

    means: Tensor
    log_scales: Tensor
    rotations: Tensor
    colors: Tensor
    opacity_logits: Tensor
    depths: Tensor

    def __post_init__(self) -> None:
        n = self.means.shape[0]
        shapes = {"means": (n, 2), "log_scales": (n, 2), "rotations": (n,), "colors": (n, 3),
                  "opacity_logits": (n,), "depths": (n,)}
        for name, shape in shapes.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"{name} must have shape {shape} for N={n}, got {got}")

    def __len__(self) -> int:
        return self.means.shape[0]

    def as_dict(self) -> dict[str, Tensor]:
        return {name: getattr(self, name) for name in FIELDS}

    def detach(self) -> "Gaussians2D":
        return Gaussians2D(**{k: v.detach().clone() for k, v in self.as_dict().items()})

    def __getitem__(self, index) -> "Gaussians2D":
        return Gaussians2D(**{k: v[index] for k, v in self.as_dict().items()})

    @staticmethod
    def cat(items: list["Gaussians2D"]) -> "Gaussians2D":
        return Gaussians2D(**{k: torch.cat([getattr(g, k) for g in items]) for k in FIELDS})


def screen_space(gaussians: Gaussians2D, height: int):
    """Pixel-space means [N, 2], conics [N, 3] and covariance diagonals [N, 2] at render height.
    The plain torch form; the CPU path runs the fused `screen.ScreenSpace2D`, tested against it."""
    means = gaussians.means * height
    scales = torch.exp(gaussians.log_scales) * height
    cos, sin = torch.cos(gaussians.rotations), torch.sin(gaussians.rotations)
    sx2, sy2 = scales[:, 0] ** 2, scales[:, 1] ** 2
    a = cos * cos * sx2 + sin * sin * sy2
    b = cos * sin * (sx2 - sy2)
    c = sin * sin * sx2 + cos * cos * sy2
    det = a * c - b * b
    conics = torch.stack([c / det, -b / det, a / det], dim=-1)
    return means, conics, torch.stack([a, c], dim=-1)


def render_gaussians_2d(
    gaussians: Gaussians2D,
    width: int,
    height: int,
    blend: str = "alpha",
    background: Tensor | None = None,  # [3], alpha blending only
    tile_size: int = 16,
    backend: str = "cpu",
) -> tuple[Tensor, Tensor]:
    """Render to an image [H, W, 3] and its alpha [H, W, 1], differentiably, with the rasterizer's
    CPU kernels (`backend="torch"`: its dense reference, for checks). `blend="alpha"` composites
    front to back in depth order; `blend="sum"` adds alpha * colour order-free, as GaussianImage does."""
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {BLENDS}, got {blend!r}")
    bg = None if background is None else background.reshape(1, 3)
    if backend == "torch":
        means, conics, _ = screen_space(gaussians, height)
        opacities = torch.sigmoid(gaussians.opacity_logits)
        rgb, alpha = composite_reference(
            means[None], conics[None], gaussians.colors[None], opacities[None], gaussians.depths[None],
            torch.isfinite(conics).all(-1)[None], width, height, bg, blend=blend,
        )
        return rgb[0], alpha[0]
    if backend != "cpu":
        raise ValueError(f"backend must be 'cpu' or 'torch', got {backend!r}")
    means, conics, opacities, radii = screen_space_fused(
        gaussians.means, gaussians.log_scales, gaussians.rotations, gaussians.opacity_logits, height)
    with torch.no_grad():
        order = gaussians.depths if blend == "alpha" else torch.zeros_like(gaussians.depths)
        tile_width, tile_height = math.ceil(width / tile_size), math.ceil(height / tile_size)
        _, _, flatten_ids, offsets = isect_tiles(
            means, radii, order, torch.zeros(len(gaussians), dtype=torch.long), 1, tile_size, tile_width, tile_height
        )
    rgb, alpha = rasterize_to_pixels(
        means[None], conics[None], gaussians.colors[None], opacities[None], width, height, tile_size, offsets,
        flatten_ids, backgrounds=bg, blend=blend,
    )
    return rgb[0], alpha[0]
