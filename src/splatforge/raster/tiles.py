"""Tile binning: which Gaussians touch which 16x16 tile, sorted front to back within each tile.

The output has gsplat's layout, so code that reads `meta` works unchanged:
- `isect_ids` [n_isects] int64: image id | tile id << 32 | float32 depth bits, sorted;
- `flatten_ids` [n_isects] int32: the Gaussian of each intersection, as an index into the
  flattened [I * N] (or packed [nnz]) arrays;
- `isect_offsets` [I, tile_height, tile_width] int32: where each tile's run starts.

Instead of one global sort of 64-bit keys, it counts intersections per tile, scatters them into
place (a counting sort by tile) and sorts each tile's short run by depth in parallel.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from torch import Tensor

from ..core.parallel import serialized


@numba.njit(cache=True)
def _tile_rect(mx, my, rx, ry, tile_size, tile_width, tile_height):
    """gsplat's tile rectangle [x0, x1) x [y0, y1) of a Gaussian's pixel box."""
    tx, ty = mx / tile_size, my / tile_size
    trx, try_ = rx / tile_size, ry / tile_size
    x0 = min(max(0, int(math.floor(tx - trx))), tile_width)
    y0 = min(max(0, int(math.floor(ty - try_))), tile_height)
    x1 = min(max(0, int(math.ceil(tx + trx))), tile_width)
    y1 = min(max(0, int(math.ceil(ty + try_))), tile_height)
    return x0, x1, y0, y1


@numba.njit(cache=True)
def _count_tiles(means2d, radii, image_ids, tile_size, tile_width, tile_height, n_images):
    m = means2d.shape[0]
    n_tiles = tile_width * tile_height
    tiles_per_gauss = np.zeros(m, dtype=np.int32)
    counts = np.zeros(n_images * n_tiles + 1, dtype=np.int64)
    for i in range(m):
        if radii[i, 0] <= 0 or radii[i, 1] <= 0:
            continue
        x0, x1, y0, y1 = _tile_rect(
            means2d[i, 0], means2d[i, 1], radii[i, 0], radii[i, 1], tile_size, tile_width, tile_height
        )
        tiles_per_gauss[i] = (x1 - x0) * (y1 - y0)
        base = image_ids[i] * n_tiles
        for ty in range(y0, y1):
            for tx in range(x0, x1):
                counts[base + ty * tile_width + tx + 1] += 1
    return tiles_per_gauss, counts


@numba.njit(cache=True)
def _scatter(means2d, radii, depths, image_ids, tile_size, tile_width, tile_height, offsets):
    n_tiles = tile_width * tile_height
    n_isects = offsets[-1]
    flatten_ids = np.empty(n_isects, dtype=np.int32)
    keys = np.empty(n_isects, dtype=np.float32)
    cursor = offsets[:-1].copy()
    for i in range(means2d.shape[0]):
        if radii[i, 0] <= 0 or radii[i, 1] <= 0:
            continue
        x0, x1, y0, y1 = _tile_rect(
            means2d[i, 0], means2d[i, 1], radii[i, 0], radii[i, 1], tile_size, tile_width, tile_height
        )
        base = image_ids[i] * n_tiles
        for ty in range(y0, y1):
            for tx in range(x0, x1):
                k = base + ty * tile_width + tx
                flatten_ids[cursor[k]] = i
                keys[cursor[k]] = depths[i]
                cursor[k] += 1
    return flatten_ids, keys


@serialized
@numba.njit(cache=True, parallel=True)
def _sort_runs(flatten_ids, keys, offsets, n_tiles, tile_bits):
    """Sort each tile's run by depth (ties keep Gaussian order) and build gsplat's isect ids:
    image << (tile_bits + 32) | tile << 32 | depth bits. Each entry is sorted as one 64-bit
    integer, its depth's bits made order-preserving over the high half and its place in the run
    the low half: one plain integer sort, no index indirection."""
    n_keys = offsets.shape[0] - 1
    isect_ids = np.empty(flatten_ids.shape[0], dtype=np.int64)
    for k in numba.prange(n_keys):
        s, e = offsets[k], offsets[k + 1]
        if e == s:
            continue
        bits = keys[s:e].view(np.uint32)
        packed = np.empty(e - s, dtype=np.uint64)
        for j in range(e - s):
            b = np.uint64(bits[j]) if bits[j] != np.uint32(0x80000000) else np.uint64(0)  # -0 ties +0
            # IEEE floats order as integers once negatives have all bits flipped, positives the sign bit
            order = b ^ np.uint64(0xFFFFFFFF) if b >> np.uint64(31) else b | np.uint64(0x80000000)
            packed[j] = (order << np.uint64(32)) | np.uint64(j)
        packed.sort()
        ids = flatten_ids[s:e].copy()
        image, tile = k // n_tiles, k % n_tiles
        prefix = ((np.int64(image) << tile_bits) | np.int64(tile)) << 32
        for j in range(e - s):
            src = np.int64(packed[j] & np.uint64(0xFFFFFFFF))
            flatten_ids[s + j] = ids[src]
            isect_ids[s + j] = prefix | np.int64(bits[src])
    return isect_ids


def isect_tiles(
    means2d: Tensor,  # [M, 2] entries (M = I * N flattened, or nnz when packed)
    radii: Tensor,  # [M, 2] int32
    depths: Tensor,  # [M]
    image_ids: Tensor,  # [M] int, the image of each entry
    n_images: int,
    tile_size: int,
    tile_width: int,
    tile_height: int,
):
    """Bin entries into tiles. Returns tiles_per_gauss [M], isect_ids [n], flatten_ids [n] and
    isect_offsets [n_images, tile_height, tile_width], as gsplat's isect_tiles + isect_offset_encode."""
    m2 = means2d.detach().to("cpu", torch.float32).contiguous().numpy()
    r = radii.detach().to("cpu", torch.int32).contiguous().numpy()
    d = depths.detach().to("cpu", torch.float32).contiguous().numpy()
    img = image_ids.detach().to("cpu", torch.int64).contiguous().numpy()
    tiles_per_gauss, counts = _count_tiles(m2, r, img, tile_size, tile_width, tile_height, n_images)
    offsets = np.cumsum(counts)
    flatten_ids, keys = _scatter(m2, r, d, img, tile_size, tile_width, tile_height, offsets)
    n_tiles = tile_width * tile_height
    isect_ids = _sort_runs(flatten_ids, keys, offsets, n_tiles, n_tiles.bit_length())
    isect_offsets = offsets[:-1].astype(np.int32).reshape(n_images, tile_height, tile_width)
    return (
        torch.from_numpy(tiles_per_gauss),
        torch.from_numpy(isect_ids),
        torch.from_numpy(flatten_ids),
        torch.from_numpy(isect_offsets),
    )
