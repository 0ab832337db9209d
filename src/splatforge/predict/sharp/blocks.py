"""Convolutional building blocks shared by SHARP's decoders, Gaussian decoder and alignment UNet.

Module trees (the `residual.N` / `shortcut` / `resnet1` / `deconv` / `out_conv` children) follow
ml-sharp's, because the checkpoint's keys are built from them.
"""

from __future__ import annotations

from torch import Tensor, nn

from .params import NormLayerName, UpsamplingMode


def norm_layer_2d(num_features: int, norm_type: NormLayerName, num_groups: int = 8) -> nn.Module:
    if norm_type == "noop":
        return nn.Identity()
    if norm_type == "batch_norm":
        return nn.BatchNorm2d(num_features)
    if norm_type == "group_norm":
        return nn.GroupNorm(num_groups=num_groups, num_channels=num_features)
    if norm_type == "instance_norm":
        return nn.InstanceNorm2d(num_features)
    raise ValueError(f"unknown normalization layer {norm_type!r}")


def upsampling_layer(mode: UpsamplingMode, scale_factor: int, dim_in: int) -> nn.Module:
    if mode == "transposed_conv":
        return nn.ConvTranspose2d(dim_in, dim_in, kernel_size=scale_factor, stride=scale_factor,
                                  padding=0, bias=False)
    if mode in ("nearest", "bilinear"):
        return nn.Upsample(scale_factor=scale_factor, mode=mode)
    raise ValueError(f"unknown upsampling mode {mode!r}")


class ResidualBlock(nn.Module):
    """x -> shortcut(x) + residual(x) (pre-activation ResNet block)."""

    def __init__(self, residual: nn.Module, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.residual = residual
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        delta = self.residual(x)
        if self.shortcut is not None:
            x = self.shortcut(x)
        return x + delta


def residual_block_2d(dim_in: int, dim_out: int, dim_hidden: int | None = None,
                      norm_type: NormLayerName = "noop", norm_num_groups: int = 8) -> ResidualBlock:
    """norm -> ReLU -> conv3x3 twice, with a 1x1 conv shortcut when the width changes."""
    if dim_hidden is None:
        dim_hidden = dim_out // 2
    # One ReLU instance shared by both halves, as in ml-sharp (it holds no parameters, but the
    # Sequential's indices depend on each half having its own entry).
    relu = nn.ReLU()
    layers: list[nn.Module] = []
    for a, b in ((dim_in, dim_hidden), (dim_hidden, dim_out)):
        layers += [norm_layer_2d(a, norm_type, num_groups=norm_num_groups), relu,
                   nn.Conv2d(a, b, kernel_size=3, stride=1, padding=1)]
    shortcut = nn.Conv2d(dim_in, dim_out, 1) if dim_in != dim_out else None
    return ResidualBlock(nn.Sequential(*layers), shortcut)


def _fusion_residual(dim: int) -> ResidualBlock:
    return ResidualBlock(nn.Sequential(
        nn.ReLU(False), nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, bias=True),
        nn.ReLU(False), nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, bias=True)))


class FeatureFusionBlock2d(nn.Module):
    """DPT fusion: x0 (+ resnet1(x1)) -> resnet2 -> upsample ("deconv") -> 1x1 out_conv."""

    def __init__(self, dim_in: int, dim_out: int | None = None,
                 upsampling_mode: UpsamplingMode | None = None) -> None:
        super().__init__()
        dim_out = dim_in if dim_out is None else dim_out
        self.resnet1 = _fusion_residual(dim_in)
        self.resnet2 = _fusion_residual(dim_in)
        self.deconv = (upsampling_layer(upsampling_mode, 2, dim_in) if upsampling_mode is not None
                       else nn.Sequential())
        self.out_conv = nn.Conv2d(dim_in, dim_out, kernel_size=1, stride=1, padding=0, bias=True)

    def forward(self, x0: Tensor, x1: Tensor | None = None) -> Tensor:
        x = x0
        if x1 is not None:
            x = x + self.resnet1(x1)
        return self.out_conv(self.deconv(self.resnet2(x)))


def project_upsample_block(dim_in: int, dim_out: int, upsample_layers: int,
                           dim_intermediate: int | None = None) -> nn.Sequential:
    """1x1 projection (no bias) followed by `upsample_layers` 2x transposed convolutions."""
    dim_intermediate = dim_out if dim_intermediate is None else dim_intermediate
    blocks: list[nn.Module] = [nn.Conv2d(dim_in, dim_intermediate, 1, bias=False)]
    blocks += [nn.ConvTranspose2d(dim_intermediate if i == 0 else dim_out, dim_out, kernel_size=2,
                                  stride=2, padding=0, bias=False)
               for i in range(upsample_layers)]
    return nn.Sequential(*blocks)
