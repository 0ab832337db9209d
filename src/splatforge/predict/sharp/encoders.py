"""Encoders: the Depth Pro sliding-pyramid ViT encoder and the small UNet encoder of the alignment.

Sliding pyramid (Bochkovskii et al., "Depth Pro", 2024): the 4s x 4s input (s = ViT size, 384 for
the official model) is seen at three scales: 5x5 overlapping s-crops of the full image, 3x3 of the
half-size image, and the quarter-size image whole. All 35 crops go through the patch ViT in one
batch; the token grids are stitched back (trimming the overlap) into feature maps of 4x, 2x and
1x the token grid, plus two hooked intermediate blocks at 4x. A second ViT encodes the quarter
image for global context.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import norm_layer_2d, project_upsample_block, residual_block_2d
from .params import NormLayerName
from .vit import VisionTransformer


def split_patches(image: Tensor, overlap_ratio: float, patch_size: int) -> Tensor:
    """[B, C, S, S] -> [steps*steps*B, C, patch, patch], row-major over crop positions."""
    stride = int(patch_size * (1 - overlap_ratio))
    size = image.shape[-1]
    steps = int(math.ceil((size - patch_size) / stride)) + 1
    crops = [image[..., j * stride:j * stride + patch_size, i * stride:i * stride + patch_size]
             for j in range(steps) for i in range(steps)]
    return torch.cat(crops, dim=0)


def merge_patches(patches: Tensor, batch_size: int, padding: int) -> Tensor:
    """Inverse of `split_patches` on feature maps: trim `padding` cells at inner edges, stitch."""
    steps = int(math.sqrt(patches.shape[0] // batch_size))
    rows = []
    for j in range(steps):
        row = []
        for i in range(steps):
            idx = j * steps + i
            p = patches[batch_size * idx: batch_size * (idx + 1)]
            if padding:
                top = padding if j != 0 else 0
                bottom = p.shape[-2] - (padding if j != steps - 1 else 0)
                left = padding if i != 0 else 0
                right = p.shape[-1] - (padding if i != steps - 1 else 0)
                p = p[..., top:bottom, left:right]
            row.append(p)
        rows.append(torch.cat(row, dim=-1))
    return torch.cat(rows, dim=-2)


class SlidingPyramidNetwork(nn.Module):
    """Multi-resolution encodings from two ViTs; see the module docstring.

    forward(x [B, 3, 4s, 4s], values in [-1, 1]) -> five maps, highest resolution first; with a
    g x g token grid (g = 24): [B, d0, 32g, 32g], [B, d1, 16g, 16g], [B, d2, 8g, 8g],
    [B, d3, 4g, 4g], [B, d4, 2g, 2g] (768, 384, 192, 96, 48 for the official model).
    """

    def __init__(self, dims_encoder: list[int], patch_encoder: VisionTransformer,
                 image_encoder: VisionTransformer, use_patch_overlap: bool = True) -> None:
        super().__init__()
        self.dim_in = patch_encoder.dim_in
        self.dims_encoder = list(dims_encoder)
        self.patch_encoder = patch_encoder
        self.image_encoder = image_encoder
        self.patch_size = patch_encoder.internal_resolution()
        self.use_patch_overlap = use_patch_overlap
        ids = patch_encoder.intermediate_features_ids
        if not isinstance(ids, list) or len(ids) != 4:
            raise ValueError("patch encoder intermediate feature ids must be a 4-item list")
        self.patch_intermediate_features_ids = ids
        base = patch_encoder.embed_dim
        d = self.dims_encoder
        self.upsample_latent0 = project_upsample_block(base, d[0], 3, dim_intermediate=d[1])
        self.upsample_latent1 = project_upsample_block(base, d[1], 2)
        self.upsample0 = project_upsample_block(base, d[2], 1)
        self.upsample1 = project_upsample_block(base, d[3], 1)
        self.upsample2 = project_upsample_block(base, d[4], 1)
        self.upsample_lowres = nn.ConvTranspose2d(image_encoder.embed_dim, d[4], kernel_size=2,
                                                  stride=2, padding=0, bias=True)
        self.fuse_lowres = nn.Conv2d(d[4] * 2, d[4], kernel_size=1, stride=1, padding=0, bias=True)

    def internal_resolution(self) -> int:
        return self.patch_size * 4

    def forward(self, x: Tensor) -> list[Tensor]:
        batch_size = x.shape[0]
        x0 = x
        x1 = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
        x2 = F.interpolate(x, scale_factor=0.25, mode="bilinear", align_corners=False)
        if self.use_patch_overlap:
            x0_patches = split_patches(x0, 0.25, self.patch_size)
            x1_patches = split_patches(x1, 0.5, self.patch_size)
            padding = 3
        else:
            x0_patches = split_patches(x0, 0.0, self.patch_size)
            x1_patches = split_patches(x1, 0.0, self.patch_size)
            padding = 0
        n0, n1 = x0_patches.shape[0], x1_patches.shape[0]
        encodings, hooked = self.patch_encoder(torch.cat((x0_patches, x1_patches, x2), dim=0))

        ids = self.patch_intermediate_features_ids
        latent0 = merge_patches(self.patch_encoder.reshape_feature(hooked[ids[0]])[:n0],
                                batch_size, padding)
        latent1 = merge_patches(self.patch_encoder.reshape_feature(hooked[ids[1]])[:n0],
                                batch_size, padding)
        x0_enc, x1_enc, x2_enc = torch.split(encodings, [n0, n1, x2.shape[0]], dim=0)
        x0_features = merge_patches(x0_enc, batch_size, padding)
        x1_features = merge_patches(x1_enc, batch_size, 2 * padding)

        lowres, _ = self.image_encoder(x2)
        x2_features = self.upsample2(x2_enc)
        lowres = self.fuse_lowres(torch.cat((x2_features, self.upsample_lowres(lowres)), dim=1))
        return [
            self.upsample_latent0(latent0),
            self.upsample_latent1(latent1),
            self.upsample0(x0_features),
            self.upsample1(x1_features),
            lowres,
        ]


class UNetEncoder(nn.Module):
    """conv_in, then `steps` times: 2x average-pool and residual blocks."""

    def __init__(self, dim_in: int, width: list[int], steps: int,
                 norm_type: NormLayerName = "group_norm", norm_num_groups: int = 8,
                 blocks_per_layer: int = 2) -> None:
        super().__init__()
        if len(width) != steps + 1:
            raise ValueError("UNetEncoder needs steps + 1 widths")
        self.output_dims = list(width)
        self.convs_down = nn.ModuleList()  # registered first, as in ml-sharp (key order)
        self.conv_in = nn.Sequential(
            nn.Conv2d(dim_in, width[0], 3, stride=1, padding=1),
            norm_layer_2d(width[0], norm_type, num_groups=norm_num_groups),
            nn.ReLU(),
        )
        for i in range(steps):
            self.convs_down.append(nn.Sequential(
                nn.AvgPool2d(2, stride=2),
                residual_block_2d(width[i], width[i + 1], norm_type=norm_type,
                                  norm_num_groups=norm_num_groups),
                *[residual_block_2d(width[i + 1], width[i + 1], norm_type=norm_type,
                                    norm_num_groups=norm_num_groups)
                  for _ in range(blocks_per_layer - 1)],
            ))

    def forward(self, x: Tensor) -> list[Tensor]:
        features = [self.conv_in(x)]
        for down in self.convs_down:
            features.append(down(features[-1]))
        return features
