"""Base Gaussians from image + depth: one Gaussian per stride x stride cell and layer, placed on
the (pooled) depth surface, sized to the cell, coloured with the cell's mean colour.

Tensors are [B, C, layers, h, w]; x and y are in NDC ((-1, -1) top left), z holds inverse depth.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .params import InitializerParams


class GaussianBaseValues(NamedTuple):
    mean_x_ndc: Tensor
    mean_y_ndc: Tensor
    mean_inverse_z_ndc: Tensor
    scales: Tensor
    quaternions: Tensor
    colors: Tensor
    opacities: Tensor


class InitializerOutput(NamedTuple):
    gaussian_base_values: GaussianBaseValues
    feature_input: Tensor  # [B, 5, H, W]: RGB and normalized disparity, mapped to [-1, 1]
    global_scale: Tensor | None  # [B]: multiplies the normalized Gaussians back to metric


def _rescale_depth(depth: Tensor, depth_min: float = 1.0,
                   depth_max: float = 1e2) -> tuple[Tensor, Tensor]:
    """Scale each image's depth so its nearest point is at `depth_min`, clamped at `depth_max`."""
    current_min = depth.flatten(depth.ndim - 3).min(dim=-1).values
    factor = depth_min / (current_min + 1e-6)
    return (depth * factor[..., None, None, None]).clamp(max=depth_max), factor


class MultiLayerInitializer(nn.Module):
    def __init__(self, params: InitializerParams) -> None:
        super().__init__()
        self.num_layers = params.num_layers
        self.stride = params.stride
        self.base_depth = params.base_depth
        self.scale_factor = params.scale_factor
        self.disparity_factor = params.disparity_factor
        self.color_option = params.color_option
        self.first_layer_depth_option = params.first_layer_depth_option
        self.rest_layer_depth_option = params.rest_layer_depth_option
        self.normalize_depth = params.normalize_depth

    def _plane_layers(self, n: int, like: Tensor, b: int, h: int, w: int) -> Tensor:
        disparity = torch.linspace(1.0 / self.base_depth, 0.0, n + 1, device=like.device)
        return disparity[None, None, :-1, None, None].repeat(b, 1, 1, h, w)

    def _surface_layer(self, depth: Tensor, option: str) -> Tensor:
        disparity = 1.0 / depth
        if option == "surface_min":  # nearest surface in the cell: the largest disparity
            disparity = torch.max_pool2d(disparity, self.stride, self.stride)
        else:
            disparity = -torch.max_pool2d(-disparity, self.stride, self.stride)
        return disparity[:, :, None, :, :]

    def _layer(self, depth: Tensor, option: str, n: int, b: int, h: int, w: int) -> Tensor:
        if option in ("surface_min", "surface_max"):
            return self._surface_layer(depth, option)
        if option == "base_depth":
            return torch.cat([self._plane_layers(1, depth, b, h, w) for _ in range(n)], dim=2)
        if option == "linear_disparity":
            return self._plane_layers(n, depth, b, h, w)
        raise ValueError(f"unknown depth init option {option!r}")

    def forward(self, image: Tensor, depth: Tensor) -> InitializerOutput:
        image = image.contiguous()
        depth = depth.contiguous()
        b, _, height, width = depth.shape
        h, w = height // self.stride, width // self.stride
        global_scale = None
        if self.normalize_depth:
            depth, factor = _rescale_depth(depth)
            global_scale = 1.0 / factor

        first = self._layer(depth[:, 0:1], self.first_layer_depth_option, 1, b, h, w)
        if self.num_layers == 1:
            disparity = first
        else:
            following = depth if depth.shape[1] == 1 else depth[:, 1:]
            rest = self._layer(following, self.rest_layer_depth_option, self.num_layers - 1,
                               b, h, w)
            disparity = torch.cat([first, rest], dim=2)

        xx = torch.arange(0.5 * self.stride, width, self.stride, device=depth.device)
        yy = torch.arange(0.5 * self.stride, height, self.stride, device=depth.device)
        xx, yy = torch.meshgrid(2 * xx / width - 1.0, 2 * yy / height - 1.0, indexing="xy")
        base_x = xx[None, None, None].repeat(b, 1, self.num_layers, 1, 1)
        base_y = yy[None, None, None].repeat(b, 1, self.num_layers, 1, 1)

        scale_factor = 2 * self.scale_factor * self.stride / float(width)
        base_scales = torch.ones_like(disparity) / disparity * scale_factor
        quaternions = torch.tensor([1.0, 0.0, 0.0, 0.0], device=depth.device)[None, :, None, None,
                                                                                None]
        # Start each layer at opacity 1/layers so the stack's transmittance is ~1/e whatever
        # the number of layers.
        opacities = torch.tensor([min(1.0 / self.num_layers, 0.5)], device=depth.device)
        if self.color_option == "none":
            colors = torch.full((b, 3, self.num_layers, h, w), 0.5, device=depth.device)
        elif self.color_option == "first_layer":
            colors = torch.full((b, 3, self.num_layers, h, w), 0.5, device=depth.device)
            colors[:, :, 0] = F.avg_pool2d(image, self.stride, self.stride)
        elif self.color_option == "all_layers":
            pooled = F.avg_pool2d(image, self.stride, self.stride)
            colors = pooled[:, :, None].repeat(1, 1, self.num_layers, 1, 1)
        else:
            raise ValueError(f"unknown colour init option {self.color_option!r}")

        feature_input = torch.cat([image, self.disparity_factor / depth], dim=1) * 2.0 - 1.0
        base = GaussianBaseValues(base_x, base_y, disparity, base_scales, quaternions, colors,
                                  opacities)
        return InitializerOutput(base, feature_input, global_scale)
