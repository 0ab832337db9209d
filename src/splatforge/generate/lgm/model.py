"""The LGM network: U-Net + 1x1 conv head + LGM's activations, as `LGMNetwork`.

Its state dict is the released checkpoint's: `unet.*` (see `unet.py`) and `conv.weight`,
`conv.bias`. Input: [B, 4, 9, S, S], four views at LGM's cameras (ImageNet-normalised RGB, then
the 6 Plücker channels of `cameras.plucker_rays`). Output: [B, 4 * s * s, 14] Gaussians in
LGM's world frame, activated as the reference does:

    position 0:3  clamp(-1, 1)          opacity 3    sigmoid
    scale    4:7  0.1 * softplus        rotation 7:11 normalized quaternion (w, x, y, z)
    rgb      11:14 0.5 * tanh + 0.5

Gaussians are ordered view by view, then row-major over each view's s x s output pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .unet import NUM_VIEWS, UNet

IN_CHANNELS = 9  # RGB + Plücker (o x d, d)
GAUSSIAN_CHANNELS = 14


@dataclass(frozen=True)
class LGMConfig:
    """LGM's `Options` that shape the network and its cameras (defaults: LGM's base config)."""

    input_size: int = 256  # views are resized to this square size
    down_channels: tuple[int, ...] = (64, 128, 256, 512, 1024, 1024)
    down_attention: tuple[bool, ...] = (False, False, False, True, True, True)
    mid_attention: bool = True
    up_channels: tuple[int, ...] = (1024, 1024, 512, 256)
    up_attention: tuple[bool, ...] = (True, True, True, False)
    fovy: float = 49.1  # vertical field of view of the input cameras, degrees
    cam_radius: float = 1.5  # distance of the input cameras from the object's centre

    @property
    def splat_size(self) -> int:
        """Gaussians per view are splat_size ** 2 (LGM writes this number by hand)."""
        return self.input_size // 2 ** (len(self.down_channels) - len(self.up_channels))

    def __post_init__(self) -> None:
        if len(self.down_channels) != len(self.down_attention):
            raise ValueError("down_channels and down_attention must have the same length")
        if len(self.up_channels) != len(self.up_attention):
            raise ValueError("up_channels and up_attention must have the same length")
        if not 1 <= len(self.up_channels) <= len(self.down_channels):
            raise ValueError("the decoder needs 1 to len(down_channels) levels")
        if self.input_size % 2 ** (len(self.down_channels) - 1):
            raise ValueError(f"input_size {self.input_size} is not divisible by "
                             f"{2 ** (len(self.down_channels) - 1)} (one halving per encoder level)")


class LGMNetwork(nn.Module):
    """Four posed views -> Gaussians (see the module doc)."""

    def __init__(self, config: LGMConfig) -> None:
        super().__init__()
        self.config = config
        self.unet = UNet(IN_CHANNELS, GAUSSIAN_CHANNELS, down_channels=config.down_channels,
                         down_attention=config.down_attention, mid_attention=config.mid_attention,
                         up_channels=config.up_channels, up_attention=config.up_attention)
        self.conv = nn.Conv2d(GAUSSIAN_CHANNELS, GAUSSIAN_CHANNELS, kernel_size=1)

    def forward(self, views: Tensor) -> Tensor:  # [B, 4, 9, S, S] -> [B, 4 * s * s, 14]
        b, v, c, h, w = views.shape
        size = self.config.input_size
        if (v, c, h, w) != (NUM_VIEWS, IN_CHANNELS, size, size):
            raise ValueError(f"views must be [B, {NUM_VIEWS}, {IN_CHANNELS}, {size}, {size}], "
                             f"got {tuple(views.shape)}")
        x = self.conv(self.unet(views.reshape(b * v, c, h, w)))
        x = x.reshape(b, v, GAUSSIAN_CHANNELS, -1).permute(0, 1, 3, 2).reshape(b, -1, GAUSSIAN_CHANNELS)
        return activate(x)


def activate(x: Tensor) -> Tensor:  # [..., 14] raw -> [..., 14] activated
    return torch.cat([
        x[..., 0:3].clamp(-1, 1),
        torch.sigmoid(x[..., 3:4]),
        0.1 * F.softplus(x[..., 4:7]),
        F.normalize(x[..., 7:11], dim=-1),
        0.5 * torch.tanh(x[..., 11:14]) + 0.5,
    ], dim=-1)
