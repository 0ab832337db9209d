"""PLAS-style sorting: lay N vectors out on a 2D grid so that grid neighbours are similar.

After "Compact 3D Scene Representation via Self-Organizing Gaussian Grids" (Morgenstern et al.,
2024) and its Parallel Linear Assignment Sorting: start from a random layout; repeatedly blur the
grid (the blurred grid is each cell's target), split the grid into tiles, group each tile's cells
into random sets of four and give each set the one of its 24 permutations that puts its vectors
closest to their cells' targets. Tiles start as large as the grid and halve level by level, so
vectors first travel far and then settle locally. Images of sorted attributes are smooth, which is
what lets SOG's lossless WebP images compress well.

CPU only: the swap pass is a Numba kernel, parallel over tiles; the blur is a box filter from
integral images. Deterministic for a given seed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numba
import numpy as np

from ..core.parallel import serialized

_PERMS = np.array(list(itertools.permutations(range(4))), np.int64)  # [24, 4]


@dataclass
class PlasConfig:
    """How hard to sort; the defaults sort 1M Gaussians in seconds on two cores."""

    iterations_per_level: int = 3  # blur + swap passes at each tile size
    min_tile: int = 2  # smallest tile side; the last level swaps among 2x2 neighbourhoods
    seed: int = 0  # random start layout and groupings


@numba.njit(cache=True, nogil=True)
def _best_permutation(cells, grid, feats, target, perms, tmp_f, tmp_g):
    d = feats.shape[1]
    cost = np.zeros((4, 4))
    for e in range(4):
        for p in range(4):
            s = 0.0
            for j in range(d):
                diff = feats[cells[e], j] - target[cells[p], j]
                s += diff * diff
            cost[e, p] = s
    base = cost[0, 0] + cost[1, 1] + cost[2, 2] + cost[3, 3]
    best, best_i = base, 0
    for i in range(1, perms.shape[0]):
        c = cost[0, perms[i, 0]] + cost[1, perms[i, 1]] + cost[2, perms[i, 2]] + cost[3, perms[i, 3]]
        if c < best - 1e-12:
            best, best_i = c, i
    if best_i == 0:
        return 0.0
    for e in range(4):
        tmp_g[e] = grid[cells[e]]
        for j in range(d):
            tmp_f[e, j] = feats[cells[e], j]
    for e in range(4):
        dst = cells[perms[best_i, e]]
        grid[dst] = tmp_g[e]
        for j in range(d):
            feats[dst, j] = tmp_f[e, j]
    return base - best


@serialized
@numba.njit(parallel=True, cache=True)
def _swap_pass(grid, feats, target, width, n_active, tile, off_x, off_y, local_perm, tiles_x, tiles_y, perms):
    n_tiles = tiles_x * tiles_y
    n_jobs = min(n_tiles, 256)  # tiles are dealt round-robin to jobs: one scratch allocation each
    gains = np.zeros(n_jobs)
    d = feats.shape[1]
    for job in numba.prange(n_jobs):
        cells = np.empty(4, np.int64)
        tmp_f = np.empty((4, d), feats.dtype)
        tmp_g = np.empty(4, grid.dtype)
        gain = 0.0
        for t in range(job, n_tiles, n_jobs):
            x0 = (t % tiles_x) * tile - off_x
            y0 = (t // tiles_x) * tile - off_y
            count = 0
            for li in range(tile * tile):
                local = local_perm[li]
                x = x0 + local % tile
                y = y0 + local // tile
                if x < 0 or x >= width or y < 0:
                    continue
                c = y * width + x
                if c >= n_active:
                    continue
                cells[count] = c
                count += 1
                if count == 4:
                    gain += _best_permutation(cells, grid, feats, target, perms, tmp_f, tmp_g)
                    count = 0
        gains[job] = gain
    return gains.sum()


@serialized
@numba.njit(parallel=True, cache=True)
def _box_blur_rows(values, mask, radius):
    """Window sums along x of values * mask ([H, W, D]) and of mask ([H, W])."""
    h, w, d = values.shape
    out = np.zeros((h, w, d), np.float64)
    cnt = np.zeros((h, w), np.float64)
    for y in numba.prange(h):
        acc = np.zeros(d)
        acc_n = 0.0
        for x in range(-radius, w):
            xa = x + radius
            if xa < w and mask[y, xa]:
                for j in range(d):
                    acc[j] += values[y, xa, j]
                acc_n += 1.0
            xr = x - radius - 1
            if xr >= 0 and mask[y, xr]:
                for j in range(d):
                    acc[j] -= values[y, xr, j]
                acc_n -= 1.0
            if x >= 0:
                for j in range(d):
                    out[y, x, j] = acc[j]
                cnt[y, x] = acc_n
    return out, cnt


@numba.njit(cache=True)
def _box_blur_cols(sums, cnt, radius, out):
    # Row by row, so every access is contiguous; a running sum per column.
    h, w, d = sums.shape
    acc = np.zeros((w, d))
    acc_n = np.zeros(w)
    for y in range(-radius, h):
        ya = y + radius
        if ya < h:
            for x in range(w):
                acc_n[x] += cnt[ya, x]
                for j in range(d):
                    acc[x, j] += sums[ya, x, j]
        yr = y - radius - 1
        if yr >= 0:
            for x in range(w):
                acc_n[x] -= cnt[yr, x]
                for j in range(d):
                    acc[x, j] -= sums[yr, x, j]
        if y >= 0:
            for x in range(w):
                inv = 1.0 / max(acc_n[x], 1.0)
                for j in range(d):
                    out[y, x, j] = acc[x, j] * inv


def _box_blur(values: np.ndarray, mask: np.ndarray, radius: int) -> np.ndarray:
    """Mean of the active cells in each (2r+1)^2 window: [H, W, D] values, [H, W] mask."""
    sums, cnt = _box_blur_rows(values, mask, radius)
    out = np.empty(values.shape, np.float32)
    _box_blur_cols(sums, cnt, radius, out)
    return out


def plas_order(
    features: np.ndarray,  # [N, D]
    width: int,
    config: PlasConfig | None = None,
) -> np.ndarray:  # [N]
    """Order N feature vectors for a grid `width` texels wide filled row-major (texel i holds
    vector order[i]), so neighbouring texels hold similar vectors.

    Features are compared by squared Euclidean distance: scale the columns to weigh them.
    """
    cfg = config or PlasConfig()
    feats0 = np.ascontiguousarray(features, dtype=np.float32)
    if feats0.ndim != 2:
        raise ValueError(f"features must be [N, D], got {feats0.shape}")
    n = len(feats0)
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    if n < 8:
        return np.arange(n)
    height = -(-n // width)
    rng = np.random.default_rng(cfg.seed)
    grid = rng.permutation(n).astype(np.int64)
    feats = feats0[grid]
    mask = (np.arange(height * width) < n).reshape(height, width)
    cells = np.zeros((height * width, feats.shape[1]), np.float32)

    tile = 1 << int(np.ceil(np.log2(max(width, height))))
    while tile >= max(2, cfg.min_tile):
        for _ in range(cfg.iterations_per_level):
            cells[:n] = feats
            target = _box_blur(cells.reshape(height, width, -1), mask, max(1, tile // 4))
            target = np.ascontiguousarray(target.reshape(height * width, -1)[:n])
            off_x, off_y = (int(v) for v in rng.integers(0, tile, 2))
            tiles_x = -(-(width + off_x) // tile)
            tiles_y = -(-(height + off_y) // tile)
            local_perm = rng.permutation(tile * tile).astype(np.int64)
            _swap_pass(grid, feats, target, width, n, tile, off_x, off_y, local_perm, tiles_x, tiles_y, _PERMS)
        tile //= 2
    return grid


def neighbour_distance(features: np.ndarray, order: np.ndarray, width: int) -> float:
    """Mean squared distance between horizontally and vertically adjacent texels of a layout
    (lower is smoother); what `plas_order` reduces, for tests and benchmarks."""
    f = np.asarray(features, np.float64)[order]
    n = len(f)
    idx = np.arange(n)
    right = idx[(idx % width != width - 1) & (idx + 1 < n)]
    down = idx[idx + width < n]
    d_right = ((f[right] - f[right + 1]) ** 2).sum(1)
    d_down = ((f[down] - f[down + width]) ** 2).sum(1)
    return float(np.concatenate([d_right, d_down]).mean()) if n > 1 else 0.0
