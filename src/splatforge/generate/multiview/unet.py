"""ImageDream's multi-view U-Net: Stable Diffusion 2.1's U-Net whose attention sees all views of
the object together, conditioned on each view's camera and on the input picture (CLIP image tokens
through a resampler, and the picture's own latent placed as an extra, last view).

`MultiViewUNet(UNetConfig(...))` has the released checkpoint's module tree and parameter names
(`input_blocks.1.1.transformer_blocks.0.attn2.to_k_ip.weight`, ...); `UNetConfig.from_json` reads
the checkpoint's `unet/config.json`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from splatforge.errors import SplatforgeError

from .attention import Resampler, SpatialTransformer3D

# config.json entries that change nothing at inference (training switches, diffusers metadata)
_IGNORED_KEYS = {"_class_name", "_diffusers_version", "_name_or_path", "use_checkpoint", "dropout",
                 "image_size", "legacy", "use_fp16", "use_bf16",
                 # switches of the original code that select what this U-Net always is
                 "use_spatial_transformer", "use_linear_in_transformer", "with_ip", "ip_mode"}
# entries of the original code whose non-default values this implementation does not have
_UNSUPPORTED = {"use_scale_shift_norm": False, "resblock_updown": False, "num_classes": None,
                "n_embed": None, "num_attention_blocks": None, "dims": 2, "conv_resample": True,
                "adm_in_channels": None}


@dataclass(frozen=True)
class UNetConfig:
    """The multi-view U-Net's architecture; the defaults are the released ImageDream model's."""

    in_channels: int = 4  # latent channels in
    out_channels: int = 4  # predicted noise channels
    model_channels: int = 320  # width of the first level; level i has model_channels * channel_mult[i]
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2  # residual blocks per level (the decoder has one more)
    attention_resolutions: tuple[int, ...] = (4, 2, 1)  # downsampling factors that get a transformer
    num_head_channels: int = 64  # channels per attention head (-1: use num_heads)
    num_heads: int = -1  # heads per attention layer when num_head_channels is -1
    transformer_depth: int = 1
    context_dim: int = 1024  # width of the text tokens (OpenCLIP ViT-H)
    camera_dim: int | None = 16  # a flattened 4x4 camera-to-world matrix per view
    ip_dim: int = 16  # image-prompt tokens made by the resampler (0: text-only MVDream)
    ip_weight: float = 1.0
    image_embedding_dim: int = 1280  # width of the CLIP image features (OpenCLIP ViT-H/14)

    @classmethod
    def from_json(cls, path: str | Path) -> "UNetConfig":
        """Read a diffusers-format `unet/config.json`; unknown or unsupported entries are errors."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise SplatforgeError(f"cannot read the U-Net config {path}: {err}") from err
        if not isinstance(raw, dict):
            raise SplatforgeError(f"{path} is not a U-Net config (expected a JSON object)")
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {}
        for key, value in raw.items():
            if key in fields:
                values[key] = tuple(value) if isinstance(value, list) else value
            elif key in _UNSUPPORTED:
                if value != _UNSUPPORTED[key]:
                    raise SplatforgeError(f"{path}: {key}={value!r} is not supported by splatforge's "
                                          f"multi-view U-Net (only {_UNSUPPORTED[key]!r})")
            elif key not in _IGNORED_KEYS:
                raise SplatforgeError(f"{path}: unknown U-Net config entry {key!r}; is this an "
                                      f"ImageDream/MVDream multi-view U-Net?")
        return cls(**values)

    def heads(self, channels: int) -> tuple[int, int]:
        """(heads, channels per head) of the attention layers at this width."""
        if self.num_head_channels != -1:
            return channels // self.num_head_channels, self.num_head_channels
        return self.num_heads, channels // self.num_heads


def timestep_embedding(timesteps: Tensor,  # [N], may be fractional
                       dim: int, max_period: float = 10000.0) -> Tensor:  # [N, dim]
    """Sinusoidal embedding, cosines first, then sines (the original LDM order)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = timesteps.float()[:, None] * freqs.to(timesteps.device)[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = F.pad(embedding, (0, 1))
    return embedding


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, plus the (time + camera) embedding, GroupNorm-SiLU-conv, residual."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int | None = None):
        super().__init__()
        out_channels = out_channels or channels
        self.in_layers = nn.Sequential(nn.GroupNorm(32, channels), nn.SiLU(),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(nn.GroupNorm(32, out_channels), nn.SiLU(), nn.Identity(),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = (nn.Identity() if out_channels == channels
                                else nn.Conv2d(channels, out_channels, 1))

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # [N, C, H, W], [N, E]
        h = self.in_layers(x) + self.emb_layers(emb)[:, :, None, None]
        return self.skip_connection(x) + self.out_layers(h)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class CondSequential(nn.Sequential):
    """Runs its layers in turn, handing each the inputs it takes."""

    def forward(self, x: Tensor, emb: Tensor, context: Tensor, num_views: int) -> Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer3D):
                x = layer(x, context, num_views)
            else:
                x = layer(x)
        return x


class MultiViewUNet(nn.Module):
    """Predicts the noise in the latents of F views of B objects at once (batch B*F, views of an
    object consecutive). See `forward`."""

    def __init__(self, config: UNetConfig = UNetConfig()):
        super().__init__()
        self.config = cfg = config
        emb_dim = cfg.model_channels * 4
        if cfg.ip_dim > 0:
            self.image_embed = Resampler(dim=cfg.context_dim, depth=4, dim_head=64, heads=12,
                                         num_queries=cfg.ip_dim,
                                         embedding_dim=cfg.image_embedding_dim,
                                         output_dim=cfg.context_dim)
        self.time_embed = nn.Sequential(nn.Linear(cfg.model_channels, emb_dim), nn.SiLU(),
                                        nn.Linear(emb_dim, emb_dim))
        if cfg.camera_dim is not None:
            self.camera_embed = nn.Sequential(nn.Linear(cfg.camera_dim, emb_dim), nn.SiLU(),
                                              nn.Linear(emb_dim, emb_dim))

        def transformer(channels: int) -> SpatialTransformer3D:
            heads, dim_head = cfg.heads(channels)
            return SpatialTransformer3D(channels, heads, dim_head, cfg.context_dim,
                                        cfg.transformer_depth, cfg.ip_dim, cfg.ip_weight)

        self.input_blocks = nn.ModuleList(
            [CondSequential(nn.Conv2d(cfg.in_channels, cfg.model_channels, 3, padding=1))])
        skip_channels = [cfg.model_channels]
        ch, ds = cfg.model_channels, 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, emb_dim, mult * cfg.model_channels)]
                ch = mult * cfg.model_channels
                if ds in cfg.attention_resolutions:
                    layers.append(transformer(ch))
                self.input_blocks.append(CondSequential(*layers))
                skip_channels.append(ch)
            if level != len(cfg.channel_mult) - 1:
                self.input_blocks.append(CondSequential(Downsample(ch)))
                skip_channels.append(ch)
                ds *= 2

        self.middle_block = CondSequential(ResBlock(ch, emb_dim), transformer(ch),
                                           ResBlock(ch, emb_dim))

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers = [ResBlock(ch + skip_channels.pop(), emb_dim, cfg.model_channels * mult)]
                ch = cfg.model_channels * mult
                if ds in cfg.attention_resolutions:
                    layers.append(transformer(ch))
                if level and i == cfg.num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(CondSequential(*layers))

        self.out = nn.Sequential(nn.GroupNorm(32, ch), nn.SiLU(),
                                 nn.Conv2d(cfg.model_channels, cfg.out_channels, 3, padding=1))

    def forward(self, x: Tensor,  # [B*F, in_channels, h, w] noisy latents
                timesteps: Tensor,  # [B*F]
                context: Tensor,  # [B*F, T, context_dim] text tokens
                camera: Tensor | None = None,  # [B*F, camera_dim]
                num_views: int = 1,  # F
                ip: Tensor | None = None,  # [B*F, N, image_embedding_dim] CLIP image features
                ip_img: Tensor | None = None,  # [B, in_channels, h, w] the picture's latent
                ) -> Tensor:  # [B*F, out_channels, h, w] predicted noise
        """With an image prompt (ip_dim > 0), the last view of each object is replaced by
        `ip_img` and the resampled `ip` tokens are appended to `context`."""
        cfg = self.config
        if x.shape[0] % num_views:
            raise ValueError(f"batch {x.shape[0]} is not a multiple of num_views={num_views}")
        emb = self.time_embed(timestep_embedding(timesteps, cfg.model_channels).to(x.dtype))
        if camera is not None:
            emb = emb + self.camera_embed(camera)
        if cfg.ip_dim > 0:
            if ip is None or ip_img is None:
                raise ValueError("this U-Net takes an image prompt: pass ip and ip_img")
            x = x.clone()
            x[num_views - 1::num_views] = ip_img
            context = torch.cat([context, self.image_embed(ip)], dim=1)
        skips = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb, context, num_views)
            skips.append(h)
        h = self.middle_block(h, emb, context, num_views)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, context, num_views)
        return self.out(h)
