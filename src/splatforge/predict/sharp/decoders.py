"""Decoders: the DPT multi-resolution fusion decoder and the alignment UNet's decoder."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .blocks import FeatureFusionBlock2d, norm_layer_2d, residual_block_2d
from .params import NormLayerName, UpsamplingMode


class MultiresConvDecoder(nn.Module):
    """Fuse encodings from the lowest resolution up: each level is projected to its decoder
    width (1x1 at level 0 only if the widths differ, 3x3 elsewhere), added to the running
    features and upsampled 2x by its fusion block. Output: [B, dims_decoder[0], H0, W0]."""

    def __init__(self, dims_encoder: list[int], dims_decoder: list[int] | int,
                 upsampling_mode: UpsamplingMode = "transposed_conv") -> None:
        super().__init__()
        self.dims_encoder = list(dims_encoder)
        self.dims_decoder = ([dims_decoder] * len(self.dims_encoder)
                             if isinstance(dims_decoder, int) else list(dims_decoder))
        if len(self.dims_decoder) != len(self.dims_encoder):
            raise ValueError("dims_encoder and dims_decoder have different lengths")
        self.dim_out = self.dims_decoder[0]
        enc, dec = self.dims_encoder, self.dims_decoder
        convs: list[nn.Module] = [nn.Conv2d(enc[0], dec[0], kernel_size=1, bias=False)
                                  if enc[0] != dec[0] else nn.Identity()]
        convs += [nn.Conv2d(enc[i], dec[i], kernel_size=3, stride=1, padding=1, bias=False)
                  for i in range(1, len(enc))]
        self.convs = nn.ModuleList(convs)
        self.fusions = nn.ModuleList([
            FeatureFusionBlock2d(dec[i], dec[i - 1] if i else self.dim_out,
                                 upsampling_mode if i else None)
            for i in range(len(enc))
        ])

    def forward(self, encodings: list[Tensor]) -> Tensor:
        if len(encodings) != len(self.dims_encoder):
            raise ValueError(f"expected {len(self.dims_encoder)} encoder levels, "
                             f"got {len(encodings)}")
        features = self.fusions[-1](self.convs[-1](encodings[-1]))
        for i in range(len(encodings) - 2, -1, -1):
            features = self.fusions[i](features, self.convs[i](encodings[i]))
        return features


class UNetDecoder(nn.Module):
    """`steps` times: 2x nearest upsample and residual blocks, concatenating encoder skips."""

    def __init__(self, dim_out: int, width: list[int], steps: int,
                 norm_type: NormLayerName = "group_norm", norm_num_groups: int = 8,
                 blocks_per_layer: int = 2) -> None:
        super().__init__()
        self.dim_out = dim_out
        dims = list(width)[::-1][: steps + 1]
        self.convs_up = nn.ModuleList()
        for i in range(steps):
            dim_in = dims[i] * (1 if i == 0 else 2)
            self.convs_up.append(nn.Sequential(
                nn.Upsample(scale_factor=2),
                residual_block_2d(dim_in, dims[i + 1], norm_type=norm_type,
                                  norm_num_groups=norm_num_groups),
                *[residual_block_2d(dims[i + 1], dims[i + 1], norm_type=norm_type,
                                    norm_num_groups=norm_num_groups)
                  for _ in range(blocks_per_layer - 1)],
            ))
        last = dims[-1]
        self.conv_out = nn.Sequential(
            norm_layer_2d(last * 2, norm_type, num_groups=norm_num_groups),
            nn.ReLU(),
            nn.Conv2d(last * 2, dim_out, 1),
            norm_layer_2d(dim_out, norm_type, num_groups=norm_num_groups),
            nn.ReLU(),
        )

    def forward(self, features: list[Tensor]) -> Tensor:
        level = len(features) - 1
        out = self.convs_up[0](features[level])
        for up in self.convs_up[1:]:
            level -= 1
            out = up(torch.cat([out, features[level]], dim=1))
        level -= 1
        return self.conv_out(torch.cat([out, features[level]], dim=1))
