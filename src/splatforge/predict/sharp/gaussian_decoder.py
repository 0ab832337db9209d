"""The Gaussian decoder (a second DPT decoder over the monodepth encodings, fused with the RGB +
disparity input) and the 1x1 prediction head that turns its features into per-pixel deltas."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from .blocks import FeatureFusionBlock2d, project_upsample_block, residual_block_2d
from .decoders import MultiresConvDecoder
from .params import GaussianDecoderParams


class ImageFeatures(NamedTuple):
    texture_features: Tensor
    geometry_features: Tensor


class SkipConvBackbone(nn.Module):
    """One strided conv lifting the 5-channel input to the decoder's width and resolution."""

    def __init__(self, dim_in: int, dim_out: int, kernel_size: int, stride_out: int) -> None:
        super().__init__()
        if stride_out == 1 and kernel_size != 1:
            raise ValueError("stride 1 needs kernel_size 1")
        self.conv = nn.Conv2d(dim_in, dim_out, kernel_size=kernel_size, stride=stride_out,
                              padding=(kernel_size - 1) // 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class GaussianDensePredictionTransformer(nn.Module):
    def __init__(self, decoder: MultiresConvDecoder, params: GaussianDecoderParams) -> None:
        super().__init__()
        self.decoder = decoder
        self.dim_out = params.dim_out
        self.use_depth_input = params.use_depth_input
        width = decoder.dim_out
        dim_in = params.dim_in if params.use_depth_input else params.dim_in - 1
        stride = params.stride
        if params.image_encoder_type == "skip_conv":
            kernel = 3 if stride != 1 else 1
        elif params.image_encoder_type == "skip_conv_kernel2":
            kernel = stride
        else:
            raise ValueError(f"unknown image encoder type {params.image_encoder_type!r}")
        self.image_encoder = SkipConvBackbone(dim_in, width, kernel, stride)
        self.fusion = FeatureFusionBlock2d(width)
        if stride == 1:
            self.upsample: nn.Module = project_upsample_block(width, width, upsample_layers=1)
        elif stride == 2:
            self.upsample = nn.Identity()
        else:
            raise ValueError("the Gaussian decoder supports stride 1 or 2 only")

        def head() -> nn.Sequential:
            return nn.Sequential(
                residual_block_2d(width, width, width // 2, params.norm_type,
                                  params.norm_num_groups),
                residual_block_2d(width, width, width // 2, params.norm_type,
                                  params.norm_num_groups),
                nn.ReLU(),
                nn.Conv2d(width, self.dim_out, kernel_size=1, stride=1),
                nn.ReLU(),
            )

        self.texture_head = head()
        self.geometry_head = head()

    def forward(self, input_features: Tensor, encodings: list[Tensor]) -> ImageFeatures:
        features = self.upsample(self.decoder(encodings).contiguous())
        skip_input = (input_features if self.use_depth_input
                      else input_features[:, :3].contiguous())
        features = self.fusion(features, self.image_encoder(skip_input))
        return ImageFeatures(self.texture_head(features), self.geometry_head(features))


def create_gaussian_decoder(params: GaussianDecoderParams,
                            dims_depth_features: list[int]) -> GaussianDensePredictionTransformer:
    decoder = MultiresConvDecoder(dims_depth_features, list(params.dims_decoder),
                                  upsampling_mode=params.upsampling_mode)
    return GaussianDensePredictionTransformer(decoder, params)


class DirectPredictionHead(nn.Module):
    """Features -> deltas [B, 14, layers, h, w]: 3 mean, 3 scale, 4 quaternion, 3 colour,
    1 opacity. Zero-initialized, so an untrained head predicts the initializer's Gaussians."""

    def __init__(self, feature_dim: int, num_layers: int) -> None:
        super().__init__()
        self.num_layers = num_layers
        self.geometry_prediction_head = nn.Conv2d(feature_dim, 3 * num_layers, 1)
        self.texture_prediction_head = nn.Conv2d(feature_dim, 11 * num_layers, 1)
        for conv in (self.geometry_prediction_head, self.texture_prediction_head):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, features: ImageFeatures) -> Tensor:
        geometry = self.geometry_prediction_head(features.geometry_features)
        texture = self.texture_prediction_head(features.texture_features)
        return torch.cat([geometry.unflatten(1, (3, self.num_layers)),
                          texture.unflatten(1, (11, self.num_layers))], dim=1)
