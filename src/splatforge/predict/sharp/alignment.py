"""The learned depth-alignment UNet.

ml-sharp trains with ground-truth depth and aligns the monodepth to it with a per-pixel scale
map from this UNet. At inference there is no ground truth and the module is idle, but its weights
are part of the checkpoint, so it is built (and can be run) all the same.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .composer import activation_pair
from .decoders import UNetDecoder
from .encoders import UNetEncoder
from .params import AlignmentParams


class LearnedAlignment(nn.Module):
    def __init__(self, params: AlignmentParams, depth_decoder_dim: int) -> None:
        super().__init__()
        stride, steps = params.stride, params.steps
        if stride <= 0 or stride & (stride - 1):
            raise ValueError(f"alignment stride {stride} is not a power of two")
        steps_decoder = steps - int(math.log2(stride))
        if steps_decoder < 1:
            raise ValueError("alignment needs steps > log2(stride)")
        self.activation, inverse = activation_pair(params.activation_type)
        self.depth_decoder_features = params.depth_decoder_features
        dim_in = 2 + (depth_decoder_dim if params.depth_decoder_features else 0)
        widths = [min(params.base_width << i, 1024) for i in range(steps + 1)]
        self.encoder = UNetEncoder(dim_in, widths, steps, norm_num_groups=4)
        self.decoder = UNetDecoder(widths[0], widths, steps_decoder, norm_num_groups=4)
        self.conv_out = nn.Conv2d(widths[0], 1, 1, bias=True)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.constant_(self.conv_out.bias, float(inverse(torch.tensor(1.0, device="cpu"))))

    def forward(self, depth_src: Tensor, depth_tgt: Tensor,
                depth_decoder_features: Tensor | None = None) -> Tensor:
        """Scale map [B, 1, H, W] that aligns `depth_src` to `depth_tgt` (both [B, 1, H, W])."""
        x = torch.cat([1.0 / depth_src.clamp(min=1e-4), 1.0 / depth_tgt.clamp(min=1e-4)], dim=1)
        if self.depth_decoder_features:
            if depth_decoder_features is None:
                raise ValueError("this alignment module needs the depth decoder features")
            x = torch.cat([x, F.interpolate(depth_decoder_features, size=x.shape[-2:],
                                            mode="bilinear")], dim=1)
        scale = self.activation(self.conv_out(self.decoder(self.encoder(x))))
        return F.interpolate(scale, size=depth_src.shape[-2:], mode="bilinear",
                             align_corners=False)


class DepthAlignment(nn.Module):
    """Holds the alignment module under ml-sharp's name (`depth_alignment.scale_map_estimator`)."""

    def __init__(self, scale_map_estimator: nn.Module | None) -> None:
        super().__init__()
        self.scale_map_estimator = scale_map_estimator

    def forward(self, monodepth: Tensor, depth: Tensor | None,
                decoder_features: Tensor | None = None) -> Tensor:
        if depth is None or self.scale_map_estimator is None:
            return monodepth
        return self.scale_map_estimator(monodepth[:, 0:1], depth, decoder_features) * monodepth
