"""Base values + predicted deltas -> activated Gaussians in normalized camera space.

The result is what ml-sharp calls "Gaussians in NDC space": means are (x_ndc * z, y_ndc * z, z),
which the pipeline's unprojection (`splatforge.predict.unproject`) maps to metric OpenCV camera
coordinates.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .initializer import GaussianBaseValues
from .params import ActivationType, ColorSpace, DeltaFactor


class SharpGaussians(NamedTuple):
    """The network's output, one row per Gaussian, activated (not log/logit)."""

    mean_vectors: Tensor  # [B, N, 3]
    singular_values: Tensor  # [B, N, 3]: standard deviations along the local axes
    quaternions: Tensor  # [B, N, 4]: (w, x, y, z), not normalized
    colors: Tensor  # [B, N, 3]: linear RGB (or sRGB, per the config's colour space)
    opacities: Tensor  # [B, N]


def inverse_sigmoid(x: Tensor) -> Tensor:
    return torch.log(x / (1.0 - x))


def inverse_softplus(x: Tensor, eps: float = 1e-6) -> Tensor:
    x = x.clamp_min(eps)
    s = torch.sigmoid(-x)
    return x + torch.log(-(s / (1.0 - s)) + 1.0)


def activation_pair(kind: ActivationType):
    if kind == "linear":
        return (lambda x: x), (lambda x: x)
    if kind == "exp":
        return torch.exp, torch.log
    if kind == "sigmoid":
        return torch.sigmoid, inverse_sigmoid
    if kind == "softplus":
        return F.softplus, inverse_softplus
    raise ValueError(f"unsupported activation {kind!r}")


def srgb_to_linear(x: Tensor) -> Tensor:
    low = x <= 0.04045
    # The unused branch is fed a safe value so neither branch makes NaN (or NaN gradients).
    return torch.where(low, torch.where(low, x, 0.04045) / 12.92,
                       ((torch.where(~low, x, 0.04045) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: Tensor) -> Tensor:
    low = x <= 0.0031308
    return torch.where(low, torch.where(low, x, 0.0031308) * 12.92,
                       1.055 * (torch.where(~low, x, 0.0031308) ** (1 / 2.4)) - 0.055)


class GaussianComposer(nn.Module):
    def __init__(self, delta_factor: DeltaFactor, min_scale: float, max_scale: float,
                 color_activation_type: ActivationType, opacity_activation_type: ActivationType,
                 color_space: ColorSpace, base_scale_on_predicted_mean: bool,
                 scale_factor: int = 1) -> None:
        super().__init__()
        self.delta_factor = delta_factor
        self.min_scale = min_scale
        self.max_scale = max_scale
        self.color_activation_type = color_activation_type
        self.opacity_activation_type = opacity_activation_type
        self.color_space = color_space
        self.base_scale_on_predicted_mean = base_scale_on_predicted_mean
        self.scale_factor = scale_factor
        # Chosen so that a zero delta gives scale factor 1 with slope 1.
        self.scale_a = (max_scale - min_scale) / (1 - min_scale) / (max_scale - 1)
        p = (1.0 - min_scale) / (max_scale - min_scale)
        self.scale_b = inverse_sigmoid(torch.tensor(p, device="cpu")).item()

    def forward(self, delta: Tensor, base_values: GaussianBaseValues,
                global_scale: Tensor | None = None) -> SharpGaussians:
        if self.scale_factor != 1 and base_values.mean_x_ndc.shape[-1] // delta.shape[-1] != 1:
            b, c, n, h, w = delta.shape
            delta = F.interpolate(delta.view(b, c * n, h, w), scale_factor=self.scale_factor
                                  ).view(b, c, n, h * self.scale_factor, w * self.scale_factor)
        df = self.delta_factor
        means = self._means(base_values, delta)
        base_scales = (base_values.scales * base_values.mean_inverse_z_ndc * means[:, 2:3]
                       if self.base_scale_on_predicted_mean else base_values.scales)
        factor = (self.max_scale - self.min_scale) * torch.sigmoid(
            self.scale_a * df.scale * delta[:, 3:6] + self.scale_b) + self.min_scale
        scales = base_scales * factor
        quaternions = base_values.quaternions + df.quaternion * delta[:, 6:10]

        base_colors = base_values.colors
        if self.color_activation_type == "sigmoid":
            base_colors = base_colors.clamp(0.01, 0.99)
        elif self.color_activation_type in ("exp", "softplus"):
            base_colors = base_colors.clamp(min=0.01)
        fwd, inv = activation_pair(self.color_activation_type)
        colors = fwd(inv(base_colors) + df.color * delta[:, 10:13])
        if self.color_space == "linearRGB":
            colors = srgb_to_linear(colors)
        fwd, inv = activation_pair(self.opacity_activation_type)
        opacities = fwd(inv(base_values.opacities) + df.opacity * delta[:, 13])

        # [B, C, layers, h, w] -> [B, layers*h*w, C]
        means = means.permute(0, 2, 3, 4, 1).flatten(1, 3)
        scales = scales.permute(0, 2, 3, 4, 1).flatten(1, 3)
        quaternions = quaternions.permute(0, 2, 3, 4, 1).flatten(1, 3)
        colors = colors.permute(0, 2, 3, 4, 1).flatten(1, 3)
        opacities = opacities.flatten(1, 3)
        if global_scale is not None:
            means = global_scale[:, None, None] * means
            scales = global_scale[:, None, None] * scales
        return SharpGaussians(means, scales, quaternions, colors, opacities)

    def _means(self, base: GaussianBaseValues, delta: Tensor) -> Tensor:
        df = self.delta_factor
        factor = torch.tensor([df.xy, df.xy, df.z], device=delta.device)[None, :, None, None, None]
        d = factor * delta[:, :3]
        xx = base.mean_x_ndc + d[:, 0:1]
        yy = base.mean_y_ndc + d[:, 1:2]
        inverse_z = F.softplus(inverse_softplus(base.mean_inverse_z_ndc) + d[:, 2:3])
        zz = 1.0 / (inverse_z + 1e-3)
        return torch.cat([zz * xx, zz * yy, zz], dim=1)
