"""A plain ViT whose parameters are named and shaped like timm's `VisionTransformer`.

SHARP's encoder is two timm ViT-L/16 models (class token, LayerScale, no register tokens,
`global_pool=""`). timm itself cannot be a dependency here (it imports torchvision), so this is
the same computation written out, with timm's module tree so the checkpoint's keys
(`patch_embed.proj`, `cls_token`, `pos_embed`, `blocks.N.norm1`, `blocks.N.attn.qkv`,
`blocks.N.ls1.gamma`, ..., `norm`, `head`) load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .params import ViTConfig


class PatchEmbed(nn.Module):
    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.img_size = (img_size, img_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, tokens, D]
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_values: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class GluMlp(nn.Module):
    """timm's GluMlp as its ViT builds it: the second half of fc1 gates the first through GELU."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        if hidden % 2:
            raise ValueError(f"GLU MLP needs an even hidden width, got {hidden}")
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden // 2, dim)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(x1 * self.act(x2))


class Block(nn.Module):
    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        dim = config.embed_dim
        hidden = int(dim * config.mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, config.num_heads, config.qkv_bias)
        self.ls1 = LayerScale(dim, config.init_values) if config.init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = GluMlp(dim, hidden) if config.mlp_mode == "glu" else Mlp(dim, hidden)
        self.ls2 = LayerScale(dim, config.init_values) if config.init_values else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    """ViT returning the final token grid as a feature map and chosen blocks' raw tokens.

    forward(x [B, in_chans, img_size, img_size]) -> (features [B, D, g, g],
    {block index: tokens [B, 1 + g*g, D]}) with g = img_size // patch_size.
    """

    def __init__(self, config: ViTConfig, intermediate_features_ids: list[int] | None = None):
        super().__init__()
        self.config = config
        self.dim_in = config.in_chans
        self.embed_dim = config.embed_dim
        self.intermediate_features_ids = intermediate_features_ids
        self.num_prefix_tokens = 1
        self.patch_embed = PatchEmbed(config.img_size, config.patch_size, config.in_chans,
                                      config.embed_dim)
        num_patches = config.grid_size ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        self.pos_embed = nn.Parameter(torch.randn(1, num_patches + 1, config.embed_dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(config) for _ in range(config.depth)])
        self.norm = nn.LayerNorm(config.embed_dim, eps=1e-6)
        self.head = (nn.Linear(config.embed_dim, config.num_classes) if config.num_classes
                     else nn.Identity())

    def internal_resolution(self) -> int:
        return self.patch_embed.img_size[0]

    def reshape_feature(self, tokens: Tensor) -> Tensor:  # [B, 1+g*g, D] -> [B, D, g, g]
        b, _, c = tokens.shape
        h, w = self.patch_embed.grid_size
        tokens = tokens[:, self.num_prefix_tokens:, :]
        return tokens.reshape(b, h, w, c).permute(0, 3, 1, 2)

    def forward(self, x: Tensor) -> tuple[Tensor, dict[int, Tensor]]:
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        hooks = set(self.intermediate_features_ids or ())
        intermediate = {}
        for idx, block in enumerate(self.blocks):
            x = block(x)
            if idx in hooks:
                intermediate[idx] = x
        return self.reshape_feature(self.norm(x)), intermediate
