"""`encode_sog` / `compress_scene`: Gaussians -> SOG, with a PLAS layout and k-means codebooks."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

import numpy as np

from splatforge.core.gaussians import Gaussians
from splatforge.core.sh import C0
from splatforge.errors import SplatforgeError
from splatforge.io.formats.common import arrays_of, morton_order, sigmoid
from splatforge.io.formats.sog import SogContent, image_size, pack_sog, write_sog
from splatforge.io.scene import register_writer
from splatforge.compress.kmeans import palette_kmeans, quantize_1d
from splatforge.compress.plas import PlasConfig, plas_order

SORTS = ("plas", "morton")
_PALETTE_ROW = 64  # entries per row of shN_centroids.webp


@dataclass
class SogConfig:
    """How a scene is compressed to SOG (defaults: Morton layout, an SH palette of N / 32 entries,
    positions within 5% of each Gaussian's smallest standard deviation).

    Morton is the default layout: on the garden points its position images are half PLAS's size
    and the file 2% smaller, on the 600 s demo scene 1.2% larger, and it encodes 4-10x faster
    (PLAS passes cost ~30 s on 140k Gaussians)."""

    # texel layout: "morton" (Z-order curve over positions, fast) or "plas" (sorted on position,
    # colour and scale: smoother images, slower)
    sort: Literal["plas", "morton"] = "morton"
    plas_iterations: int = 0  # PLAS blur + swap passes per tile size; 0 picks a number for N
    palette_size: int = 0  # SH palette entries (<= 65536); 0 picks a size for N (see default_palette_size)
    kmeans_iterations: int = 10  # Lloyd iterations of the SH palette k-means
    webp_method: Literal[0, 1, 2, 3, 4, 5, 6] = 4  # WebP lossless effort 0-6: higher is smaller and slower
    # How far a Gaussian may move, as a fraction of its smallest standard deviation, so that its
    # 16-bit position codes can drop low bits (0: full precision). The trade of size for PSNR:
    # see benchmarks/compress_rd.py for the curve against splat-transform's.
    position_slack: float = 0.05
    seed: int = 0  # PLAS start layout and k-means seeding


def default_palette_size(n: int) -> int:
    """SH palette size: N / 32 entries (whole rows of 64), at least min(N, 256), at most 65536.

    Every entry is 3 bytes per coefficient (45 at degree 3) that WebP cannot shrink, so the
    palette costs 45 / 32 = 1.4 bytes per Gaussian whatever N is: under a tenth of the 15.7
    bytes that a 15x smaller file than a degree-3 INRIA PLY (236 bytes without normals) allows;
    positions, rotations, scales, colours and the labels take the rest (~14 bytes).
    splat-transform's power-of-two sizes (up to 65536) cost 1.4-3 bytes per Gaussian at its
    thresholds and 8192 entries gave a 10.4x file. The SH palette is what costs test PSNR: on
    the trained 44k-Gaussian demo scene 1,408 entries lost 0.28 dB in all (15.4x), 8,192 lost
    0.15 dB (10.4x), 512 lost 0.39 dB. The floor keeps small scenes' SH from collapsing onto a
    few vectors (256 entries are 11.5 KB)."""
    if n <= 0:
        return 1
    size = -(-n // (32 * _PALETTE_ROW)) * _PALETTE_ROW
    return int(min(max(size, min(n, 256)), 65536))


def default_plas_iterations(n: int) -> int:
    """PLAS passes per tile size: 32 up to 64k Gaussians, then fewer so that sorting a million
    stays within seconds (passes cost O(N) each; ~10 tile sizes at 1M).

    Smoother images compress better: on the 44k demo scene (1,536-entry palette) 8, 16 and 32
    passes gave 17.0, 16.5 and 16.4 bytes per Gaussian, for 2 s of encoding in all."""
    return int(min(32, max(4, 32 * 65536 // max(n, 1))))


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


def pixel_weights(gaussians: Gaussians) -> tuple[np.ndarray, np.ndarray]:  # [N], [N, 3]
    """How much errors in each Gaussian's values cost in pixels, up to a common factor: (for its
    colour and SH) its opacity times its footprint's area, the product of its two largest
    standard deviations; (for each log scale) its opacity times the area of the ellipse through
    that axis and the largest one, which is what a change of that scale sweeps.

    Depth is unknown here, so a Gaussian far away counts as much as one of its size nearby. The
    SH palette weights vectors by their square roots, the 1D codebooks values by their squares (see
    `encode_sog`): on the trained demo scene the scale codebook alone (then fitted by Lloyd
    iterations) cost 54.5 dB of orbit PSNR with the Gaussian's area for all three axes and
    58.7 dB with each axis's own ellipse."""
    a = arrays_of(gaussians)
    if not len(a):
        return np.zeros(0), np.zeros((0, 3))
    s = np.sort(a.scales.astype(np.float64), axis=1)
    top = s[:, 2].max() * 2  # exp of log values up to ~2 * the largest scale: keep them finite
    opacity = sigmoid(a.opacities).astype(np.float64)
    per_gaussian = opacity * np.exp(s[:, 1] + s[:, 2] - top)
    per_scale = opacity[:, None] * np.exp(a.scales.astype(np.float64) + s[:, 2:] - top)
    return per_gaussian, per_scale


def encode_sog(gaussians: Gaussians, config: SogConfig | None = None) -> SogContent:
    """Choose the texel order and the codebooks for `gaussians` and pack them as SOG images."""
    cfg = config or SogConfig()
    if cfg.sort not in SORTS:
        raise SplatforgeError(f"sort must be one of {SORTS}, got {cfg.sort!r}")
    if not 0 <= cfg.palette_size <= 65536:
        raise SplatforgeError(f"palette_size must be 0 (automatic) to 65536, got {cfg.palette_size}")
    if cfg.plas_iterations < 0 or cfg.kmeans_iterations < 0:
        raise SplatforgeError("plas_iterations and kmeans_iterations must be >= 0")
    if not 0 <= cfg.position_slack <= 1:
        raise SplatforgeError(f"position_slack must be in 0..1 (a fraction of each Gaussian's size), "
                              f"got {cfg.position_slack}")
    a = arrays_of(gaussians)
    n = len(a)
    width, _ = image_size(n)
    if cfg.sort == "plas" and n:
        passes = cfg.plas_iterations or default_plas_iterations(n)
        order = plas_order(layout_features(gaussians), width, PlasConfig(passes, seed=cfg.seed))
    else:
        order = morton_order(a.means)
    weight, scale_weight = pixel_weights(gaussians)
    # The codebooks weigh each value by the square of its pixel weight: errors in the largest
    # Gaussians (seen in every view, seldom hidden) cost most. Alone, with the optimal codebook
    # (`quantize_1d`, no width limit), log scales cost 68.4 dB of orbit PSNR on the trained demo
    # scene weighted by pixel weight, 72.1 dB by its square (71.4 by the power 1.5, 71.6 by the
    # cube), colours 69.9 and 70.7 dB; on the garden points scales 63.5 and 67.8 dB.
    scales_cb = quantize_1d(a.scales, importance=scale_weight ** 2)
    sh0_cb = quantize_1d(a.sh0, importance=(weight ** 2)[:, None])
    palette = labels = shn_cb = None
    k = a.shN.shape[1]
    if k:
        size = cfg.palette_size or default_palette_size(n)
        if n:
            flat = a.shN.transpose(0, 2, 1).reshape(n, 3 * k)  # channel-major, as INRIA's f_rest
            # Weighted by the square root of opacity x footprint (what reaches the pixels). On the
            # fully trained demo scene (43,769 Gaussians, default palette) held-out photos lost
            # 0.267 dB unweighted, 0.264 with the square root, 0.320 with the weights themselves
            # and 0.409 with their squares (orbit PSNR 49.71 dB with the square root, 49.26 with
            # the weights); on the 600 s scene all are within 0.1 dB.
            palette, labels = palette_kmeans(flat, size, cfg.kmeans_iterations, cfg.seed, weights=np.sqrt(weight))
            palette = palette.reshape(-1, 3, k).transpose(0, 2, 1)
        else:
            palette, labels = np.zeros((1, k, 3), np.float32), np.zeros(0, np.int64)
        # A palette entry's values weigh as much as the Gaussians that use it.
        entry_weight = np.bincount(labels, weights=weight, minlength=len(palette)) if n else np.ones(len(palette))
        shn_cb = quantize_1d(palette, importance=entry_weight[:, None, None])
    tolerance = np.exp(a.scales.min(1).astype(np.float64)) * cfg.position_slack if cfg.position_slack else None
    return pack_sog(gaussians, order, scales_cb, sh0_cb, palette, labels, shn_cb, position_tolerance=tolerance)


def compress_scene(gaussians: Gaussians, path, config: SogConfig | None = None) -> None:
    """Write `gaussians` as SOG: a `.sog` path gets the zip bundle, other paths a folder with
    meta.json (see `splatforge.io.formats.sog`)."""
    cfg = config or SogConfig()
    write_sog(path, encode_sog(gaussians, cfg), webp_method=cfg.webp_method)


def _save_sog(gaussians: Gaussians, path, **options) -> None:
    compress_scene(gaussians, path, SogConfig(**options))


# `splatforge.io.scene.save_scene` writes SOG through this module; io imports nothing above it.
register_writer("sog", _save_sog, [f.name for f in fields(SogConfig)])
