"""Named configurations: "default" is the official SHARP network, "small" a few-MB model of the
same architecture for tests and demos (random weights from a seed).

The feature maps are 32x and the network input 64x the ViT token grid whatever the crop size,
so "small" shrinks the grid (2x2 tokens of 16 pixels, no patch overlap: a 128x128 input and
2 x 64 x 64 Gaussians) and the widths. tools/sharp_reference/make_fixtures.py builds the same
configuration in ml-sharp for the parity fixtures.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .params import (
    AlignmentParams,
    GaussianDecoderParams,
    MonodepthParams,
    PredictorParams,
    ViTConfig,
)

PRESETS = ("default", "small")


def preset_params(name: str) -> PredictorParams:
    """A fresh `PredictorParams` for a preset name (ValueError for an unknown name)."""
    if name == "default":
        return PredictorParams()
    if name == "small":
        vit = ViTConfig(embed_dim=32, depth=4, num_heads=2, init_values=1e-5, img_size=32,
                        patch_size=16, num_classes=10)
        return PredictorParams(
            monodepth=MonodepthParams(
                patch_encoder=vit, image_encoder=ViTConfig(**vars(vit)),
                encoder_dims=(16, 16, 24, 32), hook_block_ids=(0, 1, 2, 3),
                dims_decoder=(16, 16, 16, 16, 16), use_patch_overlap=False),
            gaussian_decoder=GaussianDecoderParams(dim_out=16, dims_decoder=(16, 16, 16, 16, 16)),
            depth_alignment=AlignmentParams(base_width=8, steps=2),
        )
    raise ValueError(f"unknown SHARP preset {name!r}; choose one of {', '.join(PRESETS)}")


def randomize_weights(model: nn.Module, seed: int) -> None:
    """Seeded random weights that exercise the whole network.

    Default initialization would leave the prediction head at zero and LayerScale at 1e-5,
    so an untrained model would output its initializer's Gaussians and ignore the ViTs.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".gamma"):
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
            elif p.ndim == 1:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel()))
        # A positive bias on the disparity head keeps depth away from the 1e-4 clamp.
        model.monodepth_model.monodepth_predictor.head[4].bias.fill_(0.5)
