"""`bilateral`: a bilateral grid per training image (gsplat's bilagrid option, from BilaRF), for
photos whose camera changed exposure, white balance or tone curve from one to the next.

Each training image owns a grid of 3x4 affine colour transforms (`grid_width` x `grid_height`
cells over the image, `grid_levels` bins of luminance). A rendered pixel looks up its transform by
trilinear interpolation at (x, y, BT.601 luminance of the rendered colour) and is mapped
rgb -> A[:, :3] rgb + A[:, 3]. Every cell starts at the identity transform; a total-variation
loss on the grids keeps neighbouring transforms alike, so the grids absorb smooth photometric
changes and not scene detail.

Views without a grid (test views, renders) are rendered without a transform: the scene itself
carries the captures' common appearance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from . import register_module
from .base import RenderBatch
from .common import OneTensorModule, stop_if_not_finite, adam, module_options, non_negative, num_train_views, positive

LUMA = (0.299, 0.587, 0.114)  # BT.601


@dataclass
class BilateralConfig:
    grid_width: int = 16  # cells across the image
    grid_height: int = 16  # cells down the image
    grid_levels: int = 8  # luminance bins
    lr: float = 2e-3  # Adam learning rate of the grids (gsplat's)
    tv_weight: float = 10.0  # weight of the grids' total-variation loss (gsplat's bilateral TV multiplier)

    def check(self) -> Optional[str]:
        for name in ("grid_width", "grid_height", "grid_levels"):
            if not 2 <= getattr(self, name) <= 256:
                return f"option {name!r} must be in 2..256, got {getattr(self, name)}"
        return positive(self, "lr") or non_negative(self, "tv_weight")


def identity_grids(count: int, levels: int, height: int, width: int) -> Tensor:  # -> [count, 12, L, H, W]
    eye = torch.eye(3, 4).reshape(12)
    return eye[None, :, None, None, None].repeat(count, 1, levels, height, width)


def slice_grids(grids: Tensor, rgb: Tensor) -> Tensor:
    """Apply grids [B, 12, L, Gh, Gw] to images rgb [B, H, W, 3]: each pixel's affine transform is
    trilinearly interpolated at (x, y, luminance) with cell centres at the grid's corners."""
    b, h, w, _ = rgb.shape
    ys = torch.linspace(-1.0, 1.0, h) if h > 1 else torch.zeros(1)
    xs = torch.linspace(-1.0, 1.0, w) if w > 1 else torch.zeros(1)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    luma = (rgb * torch.tensor(LUMA)).sum(-1).clamp(0.0, 1.0) * 2.0 - 1.0  # [B, H, W]
    coords = torch.stack([gx.expand(b, h, w), gy.expand(b, h, w), luma], dim=-1)[:, None]  # [B, 1, H, W, 3]
    affine = F.grid_sample(grids, coords, mode="bilinear", padding_mode="border", align_corners=True)
    affine = affine[:, :, 0].permute(0, 2, 3, 1).reshape(b, h, w, 3, 4)
    return (affine[..., :3] @ rgb[..., None])[..., 0] + affine[..., 3]


def total_variation(grids: Tensor) -> Tensor:
    """Mean squared difference of neighbouring cells along the luminance, y and x axes, summed."""
    tv = grids.new_zeros(())
    for dim in (2, 3, 4):
        tv = tv + torch.diff(grids, dim=dim).pow(2).mean()
    return tv


@register_module
class BilateralModule(OneTensorModule):
    tensor_name = "grids"
    name = "bilateral"

    def setup(self, capture, config) -> None:
        self.cfg = cfg = module_options(BilateralConfig, self.name, config)
        n = num_train_views(capture, self.name)
        self.grids = torch.nn.Parameter(identity_grids(n, cfg.grid_levels, cfg.grid_height, cfg.grid_width))
        self.optimizer = adam([self.grids], cfg.lr * math.sqrt(max(1, config.batch_size)))

    def after_render(self, batch: RenderBatch, rgb: Tensor, alpha: Tensor, info: dict, step: int) -> Tensor:
        if batch.view_ids is None:
            return rgb
        stop_if_not_finite(self)
        batch.extras["bilateral_ids"] = batch.view_ids
        return slice_grids(self.grids[batch.view_ids], rgb)

    def loss(self, batch: RenderBatch, step: int) -> Optional[Tensor]:
        if self.cfg.tv_weight == 0 or "bilateral_ids" not in batch.extras:
            return None
        return self.cfg.tv_weight * total_variation(self.grids[batch.extras["bilateral_ids"]])
