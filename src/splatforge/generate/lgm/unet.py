"""LGM's asymmetric U-Net, with the module tree and parameter names of 3DTopia/LGM's
`core/unet.py`, so the released checkpoint's `unet.*` keys load unchanged.

Four views travel through it as a batch of B*4 images. Residual blocks are GroupNorm(32) ->
SiLU -> conv3x3 twice with a 1x1 shortcut when the width changes, the sum scaled by sqrt(1/2).
Attention blocks are multi-view: the tokens of all four views of an object attend to each other.
Disabled attention slots are `None` entries of the `attns` lists, as in the reference, so the
indices in the key names stay the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .groupnorm import group_norm

NUM_VIEWS = 4  # the reference hard-codes four views per object in its attention blocks
GROUPS = 32
ATTENTION_HEADS = 16
SKIP_SCALE = math.sqrt(0.5)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (no bias) and an output projection."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: Tensor) -> Tensor:  # [B, N, C] -> [B, N, C]
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        # SDPA's default scale is head_dim ** -0.5, the reference's.
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class MVAttention(nn.Module):
    """GroupNorm, then attention across the tokens of the four views of each object, residual."""

    def __init__(self, dim: int, num_heads: int = ATTENTION_HEADS, skip_scale: float = SKIP_SCALE) -> None:
        super().__init__()
        self.skip_scale = skip_scale
        self.norm = nn.GroupNorm(num_groups=GROUPS, num_channels=dim, eps=1e-5, affine=True)
        self.attn = Attention(dim, num_heads)

    def forward(self, x: Tensor) -> Tensor:  # [B*4, C, H, W]
        bv, c, h, w = x.shape
        # Tokens ordered view, row, column: a view (no copy) of a channels-last tensor.
        y = group_norm(self.norm, x).permute(0, 2, 3, 1).reshape(bv // NUM_VIEWS, -1, c)
        y = self.attn(y).reshape(bv, h, w, c).permute(0, 3, 1, 2)
        return _scaled_sum(y, x, self.skip_scale)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, skip_scale: float = SKIP_SCALE) -> None:
        super().__init__()
        self.skip_scale = skip_scale
        self.norm1 = nn.GroupNorm(num_groups=GROUPS, num_channels=in_channels, eps=1e-5, affine=True)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.norm2 = nn.GroupNorm(num_groups=GROUPS, num_channels=out_channels, eps=1e-5, affine=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.shortcut = (nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels
                         else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        inplace = not torch.is_grad_enabled()
        y = self.conv1(F.silu(group_norm(self.norm1, x), inplace=inplace))
        y = self.conv2(F.silu(group_norm(self.norm2, y), inplace=inplace))
        return _scaled_sum(y, self.shortcut(x), self.skip_scale)


def _scaled_sum(y: Tensor, x: Tensor, scale: float) -> Tensor:
    """(y + x) * scale; in y's memory when no gradient is needed (y is a fresh activation)."""
    if torch.is_grad_enabled():
        return (y + x) * scale
    return y.add_(x).mul_(scale)


def _attention_slots(enabled: bool, dims: Sequence[int]) -> nn.ModuleList:
    return nn.ModuleList([MVAttention(d) if enabled else None for d in dims])


class DownBlock(nn.Module):
    """`num_layers` residual blocks (each followed by attention when enabled), then an optional
    stride-2 conv; every intermediate output is kept for the skip connections."""

    def __init__(self, in_channels: int, out_channels: int, num_layers: int, downsample: bool,
                 attention: bool) -> None:
        super().__init__()
        self.nets = nn.ModuleList([ResnetBlock(in_channels if i == 0 else out_channels, out_channels)
                                   for i in range(num_layers)])
        self.attns = _attention_slots(attention, [out_channels] * num_layers)
        self.downsample = (nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=2, padding=1)
                           if downsample else None)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        skips = []
        for attn, net in zip(self.attns, self.nets):
            x = net(x)
            if attn is not None:
                x = attn(x)
            skips.append(x)
        if self.downsample is not None:
            x = self.downsample(x)
            skips.append(x)
        return x, skips


class MidBlock(nn.Module):
    """A residual block, then (attention, residual block) once."""

    def __init__(self, channels: int, attention: bool) -> None:
        super().__init__()
        self.nets = nn.ModuleList([ResnetBlock(channels, channels), ResnetBlock(channels, channels)])
        self.attns = _attention_slots(attention, [channels])

    def forward(self, x: Tensor) -> Tensor:
        x = self.nets[0](x)
        for attn, net in zip(self.attns, self.nets[1:]):
            if attn is not None:
                x = attn(x)
            x = net(x)
        return x


class UpBlock(nn.Module):
    """`num_layers` residual blocks, each on its input concatenated with one skip (the last skip
    comes from a block of width `skip_channels`), then an optional nearest 2x upsample + conv."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, num_layers: int,
                 upsample: bool, attention: bool) -> None:
        super().__init__()
        nets = []
        for i in range(num_layers):
            cin = in_channels if i == 0 else out_channels
            cskip = skip_channels if i == num_layers - 1 else out_channels
            nets.append(ResnetBlock(cin + cskip, out_channels))
        self.nets = nn.ModuleList(nets)
        self.attns = _attention_slots(attention, [out_channels] * num_layers)
        self.upsample = (nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
                         if upsample else None)

    def forward(self, x: Tensor, skips: list[Tensor]) -> Tensor:
        for attn, net, skip in zip(self.attns, self.nets, reversed(skips)):
            x = net(torch.cat([x, skip], dim=1))
            if attn is not None:
                x = attn(x)
        if self.upsample is not None:
            x = upsample_conv(self.upsample, x)
        return x


def upsample_conv(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """`conv(nearest 2x upsampling of x)` for a 3x3 conv with padding 1, without the upsampling.

    Each output pixel of phase (a, b) (its row and column parity) sees only a 2x2 block of low-
    resolution pixels, with the 3x3 weights summed onto it (rows: phase 0 takes w0 from the row
    above and w1 + w2 from its own; phase 1 takes w0 + w1 from its own and w2 from the row below;
    columns alike). So the four phases are one 2x2 conv with 4x the outputs over the padded input,
    interleaved: 16 multiply-adds per input pixel and weight instead of 36 (0.55-0.8x the time of
    the upsampled conv for LGM's decoder). Same result up to float rounding.
    """
    w = conv.weight  # [O, I, 3, 3]
    def phases(k: Tensor, dim: int) -> tuple[Tensor, Tensor]:  # [.., 3 (dim), ..] -> two [.., 2, ..]
        first, middle, last = k.unbind(dim)
        return torch.stack([first, middle + last], dim), torch.stack([first + middle, last], dim)

    kernel = torch.cat([col for row in phases(w, 2) for col in phases(row, 3)])  # [4 O, I, 2, 2]
    channels_last = x.is_contiguous(memory_format=torch.channels_last)
    if channels_last:
        kernel = kernel.contiguous(memory_format=torch.channels_last)
    bias = conv.bias.repeat(4) if conv.bias is not None else None
    out = F.conv2d(F.pad(x, (1, 1, 1, 1)), kernel, bias)  # [B, 4 O, H + 1, W + 1]
    b, _, h, width = x.shape
    o = w.shape[0]
    y = torch.empty((b, o, 2 * h, 2 * width), dtype=out.dtype, device=out.device,
                    memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    for i, (row, col) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        y[:, :, row::2, col::2] = out[:, i * o:(i + 1) * o, row:row + h, col:col + width]
    return y


class UNet(nn.Module):
    """Encoder of `down_channels` levels (each halves the size but the last), a middle block, and
    a possibly shorter decoder of `up_channels` levels: the output is smaller than the input by
    2 ** (len(down_channels) - len(up_channels))."""

    def __init__(self, in_channels: int, out_channels: int, down_channels: Sequence[int],
                 down_attention: Sequence[bool], mid_attention: bool, up_channels: Sequence[int],
                 up_attention: Sequence[bool], layers_per_block: int = 2) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, down_channels[0], kernel_size=3, stride=1, padding=1)
        blocks, cout = [], down_channels[0]
        for i, (width, attention) in enumerate(zip(down_channels, down_attention)):
            cin, cout = cout, width
            blocks.append(DownBlock(cin, cout, layers_per_block, downsample=i != len(down_channels) - 1,
                                    attention=attention))
        self.down_blocks = nn.ModuleList(blocks)
        self.mid_block = MidBlock(down_channels[-1], mid_attention)
        blocks, cout = [], up_channels[0]
        for i, (width, attention) in enumerate(zip(up_channels, up_attention)):
            cin, cout = cout, width
            skip = down_channels[max(-2 - i, -len(down_channels))]
            blocks.append(UpBlock(cin, skip, cout, layers_per_block + 1,
                                  upsample=i != len(up_channels) - 1, attention=attention))
        self.up_blocks = nn.ModuleList(blocks)
        self.norm_out = nn.GroupNorm(num_channels=up_channels[-1], num_groups=GROUPS, eps=1e-5)
        self.conv_out = nn.Conv2d(up_channels[-1], out_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: Tensor) -> Tensor:  # [B, Cin, H, W] -> [B, Cout, h, w]
        x = self.conv_in(x)
        skips = [x]
        for block in self.down_blocks:
            x, more = block(x)
            skips.extend(more)
        x = self.mid_block(x)
        for block in self.up_blocks:
            n = len(block.nets)
            x, skips = block(x, skips[-n:]), skips[:-n]
        return self.conv_out(F.silu(group_norm(self.norm_out, x), inplace=not torch.is_grad_enabled()))
