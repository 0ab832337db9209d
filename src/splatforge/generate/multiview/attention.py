"""The attention parts of ImageDream's multi-view U-Net: the 3D spatial transformer (self-attention
across all views of an object at once, cross-attention to the text and image-prompt tokens) and the
resampler that turns CLIP image features into image-prompt tokens.

Module and parameter names follow the released diffusers-format checkpoint
(ashawkey/imagedream-ipmv-diffusers, unet/diffusion_pytorch_model.safetensors), so it loads strictly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _split_heads(x: Tensor, heads: int) -> Tensor:  # [B, L, H*D] -> [B, H, L, D]
    b, length, _ = x.shape
    return x.reshape(b, length, heads, -1).transpose(1, 2)


def _merge_heads(x: Tensor) -> Tensor:  # [B, H, L, D] -> [B, L, H*D]
    b, heads, length, dim = x.shape
    return x.transpose(1, 2).reshape(b, length, heads * dim)


class CrossAttention(nn.Module):
    """Multi-head attention of `x` to `context` (to itself without one). With `ip_tokens > 0`
    the last `ip_tokens` context tokens are the image prompt: they get their own key/value
    projections and their attention output is added, weighted by `ip_weight` (ImageDream's
    decoupled image-prompt attention)."""

    def __init__(self, query_dim: int, context_dim: int | None = None, heads: int = 8,
                 dim_head: int = 64, ip_tokens: int = 0, ip_weight: float = 1.0):
        super().__init__()
        inner = heads * dim_head
        context_dim = query_dim if context_dim is None else context_dim
        self.heads = heads
        self.ip_tokens = ip_tokens
        self.ip_weight = ip_weight
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        if ip_tokens > 0:
            self.to_k_ip = nn.Linear(context_dim, inner, bias=False)
            self.to_v_ip = nn.Linear(context_dim, inner, bias=False)
        # index 1 was a dropout in the original training code; only index 0 holds weights
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Identity())

    def _attend(self, q: Tensor, context: Tensor, to_k: nn.Linear, to_v: nn.Linear) -> Tensor:
        k, v = _split_heads(to_k(context), self.heads), _split_heads(to_v(context), self.heads)
        return F.scaled_dot_product_attention(q, k, v)

    def forward(self, x: Tensor,  # [B, L, query_dim]
                context: Tensor | None = None,  # [B, T (+ ip_tokens), context_dim]
                ) -> Tensor:  # [B, L, query_dim]
        context = x if context is None else context
        q = _split_heads(self.to_q(x), self.heads)
        if self.ip_tokens > 0:
            text, image = context[:, :-self.ip_tokens], context[:, -self.ip_tokens:]
            out = self._attend(q, text, self.to_k, self.to_v)
            out = out + self.ip_weight * self._attend(q, image, self.to_k_ip, self.to_v_ip)
        else:
            out = self._attend(q, context, self.to_k, self.to_v)
        return self.to_out(_merge_heads(out))


class GEGLU(nn.Module):
    """Linear to twice the width, then value * GELU(gate)."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: Tensor) -> Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward, 4x wide (`net.0` GEGLU, `net.2` the output projection)."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Identity(), nn.Linear(dim * mult, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class MultiViewTransformerBlock(nn.Module):
    """Self-attention over the tokens of all views of one object together (what makes the views
    consistent), then cross-attention to the text + image-prompt context, then feed-forward."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int, ip_tokens: int,
                 ip_weight: float):
        super().__init__()
        self.attn1 = CrossAttention(dim, None, heads, dim_head)
        self.ff = FeedForward(dim)
        self.attn2 = CrossAttention(dim, context_dim, heads, dim_head, ip_tokens, ip_weight)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: Tensor,  # [B*F, L, dim], F views of each object
                context: Tensor,  # [B*F, T, context_dim]
                num_views: int) -> Tensor:
        bf, length, dim = x.shape
        joint = x.reshape(bf // num_views, num_views * length, dim)
        joint = self.attn1(self.norm1(joint)) + joint
        x = joint.reshape(bf, length, dim)
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer3D(nn.Module):
    """GroupNorm, linear in, `depth` multi-view transformer blocks, linear out, residual."""

    def __init__(self, channels: int, heads: int, dim_head: int, context_dim: int, depth: int = 1,
                 ip_tokens: int = 0, ip_weight: float = 1.0):
        super().__init__()
        inner = heads * dim_head
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList(
            MultiViewTransformerBlock(inner, heads, dim_head, context_dim, ip_tokens, ip_weight)
            for _ in range(depth))
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, x: Tensor,  # [B*F, C, H, W]
                context: Tensor,  # [B*F, T, context_dim]
                num_views: int) -> Tensor:  # [B*F, C, H, W]
        b, c, h, w = x.shape
        tokens = self.proj_in(self.norm(x).flatten(2).transpose(1, 2))
        for block in self.transformer_blocks:
            tokens = block(tokens, context, num_views)
        return self.proj_out(tokens).transpose(1, 2).reshape(b, c, h, w) + x


class PerceiverAttention(nn.Module):
    """The learned queries attend to the image features and to themselves."""

    def __init__(self, dim: int, dim_head: int = 64, heads: int = 8):
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, features: Tensor,  # [B, N, dim]
                queries: Tensor,  # [B, Q, dim]
                ) -> Tensor:  # [B, Q, dim]
        features, queries = self.norm1(features), self.norm2(queries)
        q = _split_heads(self.to_q(queries), self.heads)
        k, v = self.to_kv(torch.cat([features, queries], dim=1)).chunk(2, dim=-1)
        out = F.scaled_dot_product_attention(q, _split_heads(k, self.heads),
                                             _split_heads(v, self.heads))
        return self.to_out(_merge_heads(out))


class Resampler(nn.Module):
    """CLIP image features [B, N, embedding_dim] -> `num_queries` image-prompt tokens
    [B, num_queries, output_dim] (a Perceiver resampler, as in IP-Adapter Plus)."""

    def __init__(self, dim: int, depth: int, dim_head: int, heads: int, num_queries: int,
                 embedding_dim: int, output_dim: int, ff_mult: int = 4):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(1, num_queries, dim) / dim ** 0.5)
        self.proj_in = nn.Linear(embedding_dim, dim)
        self.proj_out = nn.Linear(dim, output_dim)
        self.norm_out = nn.LayerNorm(output_dim)
        self.layers = nn.ModuleList(
            nn.ModuleList([
                PerceiverAttention(dim, dim_head, heads),
                nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * ff_mult, bias=False),
                              nn.GELU(), nn.Linear(dim * ff_mult, dim, bias=False)),
            ]) for _ in range(depth))

    def forward(self, features: Tensor) -> Tensor:  # [B, N, embedding_dim] -> [B, Q, output_dim]
        queries = self.latents.expand(features.shape[0], -1, -1)
        features = self.proj_in(features)
        for attention, feed_forward in self.layers:
            queries = attention(features, queries) + queries
            queries = feed_forward(queries) + queries
        return self.norm_out(self.proj_out(queries))
