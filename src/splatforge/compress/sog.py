"""`encode_sog` / `compress_scene`: Gaussians -> SOG, with a PLAS layout and k-means codebooks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from splatforge.core.gaussians import Gaussians
from splatforge.errors import SplatforgeError
from splatforge.io.formats._common import C0, arrays_of, morton_order
from splatforge.io.formats.sog import SogContent, image_size, pack_sog, write_sog
from splatforge.compress.kmeans import palette_kmeans, quantize_1d
from splatforge.compress.plas import PlasConfig, plas_order

SORTS = ("plas", "morton")


@dataclass
class SogConfig:
    """How a scene is compressed to SOG (defaults: PLAS layout, an SH palette of up to 8192)."""

    sort: str = "plas"  # texel layout: "plas" (smooth images, smaller files) or "morton" (faster)
    plas_iterations: int = 3  # PLAS blur + swap passes per tile size
    palette_size: int = 0  # SH palette entries (<= 65536); 0 picks a size for N (<= 8192)
    kmeans_iterations: int = 6  # Lloyd iterations of the SH palette k-means
    webp_method: int = 4  # WebP lossless effort 0-6: higher is smaller and slower
    seed: int = 0  # PLAS start layout and k-means seeding


def default_palette_size(n: int) -> int:
    """SH palette size: splat-transform's min(64, 2^floor(log2(N / 1024))) * 1024, capped at 8192.

    The cap: on a 200k-Gaussian degree-3 scene, 8192 entries gave a 14.8x smaller file than the
    INRIA PLY at 38.1 dB against the original's renders, 65536 entries 8.5x at 38.5 dB (the
    palette image dominates the file), and the CPU k-means is 8x cheaper."""
    if n <= 0:
        return 1
    size = int(min(8.0, 2.0 ** math.floor(math.log2(n / 1024))) * 1024)
    return max(1, min(size, n))


def layout_features(gaussians: Gaussians) -> np.ndarray:  # [N, 9]
    """What PLAS sorts on: standardized position, colour and log scale (position and colour
    weigh most; outlying positions are clipped so far background points do not squash the rest)."""
    a = arrays_of(gaussians)

    def standard(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        std = x.std(0)
        return np.clip((x - x.mean(0)) / np.where(std > 0, std, 1.0), -3.0, 3.0)

    rgb = a.sh0 * C0 + 0.5
    return np.concatenate([standard(a.means), standard(rgb), 0.5 * standard(a.scales)], 1).astype(np.float32)


def encode_sog(gaussians: Gaussians, config: SogConfig | None = None) -> SogContent:
    """Choose the texel order and the codebooks for `gaussians` and pack them as SOG images."""
    cfg = config or SogConfig()
    if cfg.sort not in SORTS:
        raise SplatforgeError(f"sort must be one of {SORTS}, got {cfg.sort!r}")
    if not 0 <= cfg.palette_size <= 65536:
        raise SplatforgeError(f"palette_size must be 0 (automatic) to 65536, got {cfg.palette_size}")
    a = arrays_of(gaussians)
    n = len(a)
    width, _ = image_size(n)
    if cfg.sort == "plas" and n:
        order = plas_order(layout_features(gaussians), width, PlasConfig(cfg.plas_iterations, seed=cfg.seed))
    else:
        order = morton_order(a.means)
    scales_cb = quantize_1d(a.scales)
    sh0_cb = quantize_1d(a.sh0)
    palette = labels = shn_cb = None
    k = a.shN.shape[1]
    if k:
        size = cfg.palette_size or default_palette_size(n)
        if n:
            flat = a.shN.transpose(0, 2, 1).reshape(n, 3 * k)  # channel-major, as INRIA's f_rest
            palette, labels = palette_kmeans(flat, size, cfg.kmeans_iterations, cfg.seed)
            palette = palette.reshape(-1, 3, k).transpose(0, 2, 1)
        else:
            palette, labels = np.zeros((1, k, 3), np.float32), np.zeros(0, np.int64)
        shn_cb = quantize_1d(palette)
    return pack_sog(gaussians, order, scales_cb, sh0_cb, palette, labels, shn_cb)


def compress_scene(gaussians: Gaussians, path, config: SogConfig | None = None) -> None:
    """Write `gaussians` as SOG: a `.sog` path gets the zip bundle, other paths a folder with
    meta.json (see `splatforge.io.formats.sog`)."""
    cfg = config or SogConfig()
    write_sog(path, encode_sog(gaussians, cfg), webp_method=cfg.webp_method)
