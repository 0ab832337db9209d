"""k-means on the CPU for SOG's codebooks: 1D codebooks (256 values) and SH palettes (up to 64K
vectors), in numpy and torch (matrix products for the distances, so both cores work).

- `quantize_1d`: the optimal 256-entry codebook of a histogram of the values (dynamic
  programming), each bin weighted by its importance (what an error there costs in pixels).
- `kmeans`: k-means++ seeding (on a sample when the data is large) and Lloyd iterations.
- `palette_kmeans`: plain k-means while N x k is small enough (the best palette; N = 44k
  Gaussians and k = 1,536 take a few seconds), else two-level k-means: coarse cells first, then
  each cell's share of the palette clustered within the cell, so a point is compared with
  ~sqrt(k) centroids instead of k. Deterministic for a given seed.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

# Largest N x k for one-level k-means in `palette_kmeans`: about 0.1 s per Lloyd iteration on two
# cores at 45 dimensions. On a trained 44k-Gaussian degree-3 scene with 1,536 entries one level
# lost 0.27 dB of test PSNR where two levels lost 0.30.
FLAT_KMEANS_BUDGET = 1 << 27
# k-means++ seeds from at most this many points (its cost is k passes over them).
SEEDING_SAMPLE = 16384


def quantize_1d(values: np.ndarray, k: int = 256, bins: int = 16384,
                importance: np.ndarray | None = None, max_run: int = 32) -> np.ndarray:
    """A sorted codebook of `k` values for the (flattened, finite) `values`, with the least
    importance-weighted squared error among codebooks whose runs are at most 1 / `max_run` of
    the range wide (0: no limit).

    `importance` (same shape as `values`, >= 0) says how much an error in each value costs:
    a codebook for a Gaussian attribute should be fine where the Gaussians that cover many
    pixels are (see `splatforge.compress.sog.pixel_weights`), not only where most Gaussians are.

    The values go into a histogram (bins placed between quantiles and uniform steps, leaning to
    quantiles when outliers stretch the range, as splat-transform's quantizer does); each bin
    weighs its summed importance (its count without `importance`), and the codebook is the
    optimal partition of the bins into `k` runs (dynamic programming, `_optimal_runs`), each
    entry its run's weighted mean. The width limit bounds every value's error by range /
    `max_run`, so values that weigh almost nothing (a tiny Gaussian a viewer may still fly up
    to) are not sent far.

    Lloyd iterations from weighted quantiles (what this did before) stay near their start, and
    the error-minimizing density of entries is the cube root of the weight density, not the
    density itself. Log scales alone, orbit PSNR (pixel weights as in `encode_sog`): on the
    trained demo scene 58.7 dB with Lloyd, 72.1 dB optimal (splat-transform's optimal
    partition of 1,024 bins by count: 62.3 dB); on the garden points 55.3 and 67.3 dB
    (splat-transform 47.9 dB). Bins: 1,024 cost the garden points 11 dB, 4,096 0.4 dB. The
    width limit cost 0.0 and 0.5 dB there and cut the largest error from 1.24 to 0.14 and
    from 0.76 to 0.17.
    """
    v = np.asarray(values, np.float64).reshape(-1)
    w = np.ones_like(v) if importance is None else np.broadcast_to(np.asarray(importance, np.float64),
                                                                    np.shape(values)).reshape(-1)
    finite = np.isfinite(v) & np.isfinite(w)
    v, w = v[finite], np.maximum(w[finite], 0.0)
    if v.size == 0:
        return np.zeros(k, np.float32)
    if np.unique(v[: 4 * k + 1]).size <= k:  # cheap test first: few distinct values?
        unique = np.unique(v)
        if unique.size <= k:
            return np.concatenate([unique, np.full(k - unique.size, unique[-1])]).astype(np.float32)
    w = w / w.max() if w.max() > 0 else np.ones_like(w)
    w = np.maximum(w, 1e-12)  # every value keeps a say, however small
    order = np.argsort(v, kind="stable")
    v, w = v[order], w[order]
    n, lo, span = v.size, v[0], v[-1] - v[0]
    iqr = v[int(n * 0.75)] - v[int(n * 0.25)]
    lean = min(0.999, max(0.5, 1.0 - iqr / span))
    which = np.minimum(((lean * np.arange(n) / n + (1 - lean) * (v - lo) / span) * bins).astype(np.int64), bins - 1)
    mass = np.bincount(which, weights=w, minlength=bins)
    sums = np.bincount(which, weights=w * v, minlength=bins)
    keep = mass > 0
    centers, mass = sums[keep] / mass[keep], mass[keep]
    if centers.size <= k:
        return np.concatenate([centers, np.full(k - centers.size, centers[-1])]).astype(np.float32)
    # Prefix sums of weight, weighted value and weighted square: a run's squared error in O(1).
    p0, p1, p2 = (np.concatenate([[0.0], np.cumsum(mass * centers ** e)]) for e in (0, 1, 2))
    width = span / max_run if max_run else np.inf
    penalty = 1e4 * p0[-1] * span  # a run 3% wider than `width` costs more than all errors together
    starts = _optimal_runs(p0, p1, p2, centers, width, penalty, k)
    codebook, end = np.empty(k), centers.size - 1
    for m in range(k - 1, -1, -1):
        first = starts[m, end] if m else 0
        codebook[m] = (p1[end + 1] - p1[first]) / (p0[end + 1] - p0[first])
        end = first - 1
    return np.sort(codebook).astype(np.float32)


@numba.njit(cache=True, nogil=True)
def _run_cost(p0, p1, p2, centers, width, penalty, first, last):
    """Weighted squared error of bins first..last around their weighted mean, plus `penalty`
    per unit by which the run is wider than `width` (convex in the width, so the quadrangle
    inequality still holds)."""
    w = p0[last + 1] - p0[first]
    s = p1[last + 1] - p1[first]
    cost = max(p2[last + 1] - p2[first] - s * s / w, 0.0) if w > 0.0 else 0.0
    return cost + penalty * max(centers[last] - centers[first] - width, 0.0)


@numba.njit(cache=True, nogil=True)
def _optimal_runs(p0, p1, p2, centers, width, penalty, k):  # [k, H] int64
    """starts[m, j]: where the last of m + 1 runs covering bins 0..j starts, in the partition of
    least squared error. Run costs satisfy the quadrangle inequality, so the best start moves
    right with j: each row is filled by divide and conquer in O(H log H), not O(H^2)."""
    h = p0.size - 1
    prev, cur = np.empty(h), np.empty(h)
    for j in range(h):
        prev[j] = _run_cost(p0, p1, p2, centers, width, penalty, 0, j)
    starts = np.zeros((k, h), np.int64)
    stack = np.empty((2 * h + 64, 4), np.int64)  # (lo, hi, first start, last start) to fill
    for m in range(1, k):
        cur[:] = np.inf
        stack[0, 0], stack[0, 1], stack[0, 2], stack[0, 3] = m, h - 1, m, h - 1
        top = 1
        while top:
            top -= 1
            lo, hi, s_lo, s_hi = stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3]
            if lo > hi:
                continue
            mid = (lo + hi) // 2
            best, best_start = np.inf, s_lo
            for t in range(s_lo, min(mid, s_hi) + 1):
                cost = prev[t - 1] + _run_cost(p0, p1, p2, centers, width, penalty, t, mid)
                if cost < best:
                    best, best_start = cost, t
            cur[mid], starts[m, mid] = best, best_start
            stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3] = lo, mid - 1, s_lo, best_start
            stack[top + 1, 0], stack[top + 1, 1], stack[top + 1, 2], stack[top + 1, 3] = mid + 1, hi, best_start, s_hi
            top += 2
        prev[:] = cur
    return starts


def _nearest(x: torch.Tensor, c: torch.Tensor, chunk: int = 32768) -> torch.Tensor:
    """Index of the nearest row of c for each row of x (squared Euclidean)."""
    c_sq = (c * c).sum(1)
    ct = c.T.contiguous()
    out = torch.empty(len(x), dtype=torch.long)
    for s in range(0, len(x), chunk):
        # |x - c|^2 - |x|^2 = |c|^2 - 2 x.c, in one fused matrix product
        out[s:s + chunk] = torch.addmm(c_sq, x[s:s + chunk], ct, alpha=-2.0).argmin(1)
    return out


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator, w: np.ndarray | None = None) -> np.ndarray:
    n = len(x)
    chosen = [int(rng.integers(n))]
    d2 = ((x - x[chosen[0]]) ** 2).sum(1)
    for _ in range(1, k):
        p = d2 if w is None else d2 * w
        total = float(p.sum())
        idx = int(rng.integers(n)) if total <= 0 else int(np.searchsorted(np.cumsum(p), rng.random() * total))
        idx = min(idx, n - 1)
        chosen.append(idx)
        np.minimum(d2, ((x - x[idx]) ** 2).sum(1), out=d2)
    return x[chosen].copy()


def _lloyd(x: torch.Tensor, centers: torch.Tensor, iterations: int,
           w: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    # Per-cluster sums in float64 by index_add_ (a stable sort and reduceat took 2 s per
    # iteration at 1M x 45, this 0.2 s).
    xw = x.double() if w is None else x.double() * torch.from_numpy(w)[:, None]
    k = len(centers)
    for _ in range(iterations):
        labels = _nearest(x, centers)
        sums = torch.zeros((k, x.shape[1]), dtype=torch.float64).index_add_(0, labels, xw).numpy()
        counts = np.bincount(labels.numpy(), weights=w, minlength=k)
        new = centers.numpy().copy()
        filled = counts > 0
        new[filled] = (sums[filled] / counts[filled, None]).astype(np.float32)
        centers = torch.from_numpy(new)
    return centers, _nearest(x, centers)


def kmeans(data: np.ndarray, k: int, iterations: int = 10, seed: int = 0, init: str = "kmeans++",
           sample: int = 65536, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(centroids [k', D], labels [N]) with k' = min(k, N); `init` is "kmeans++" or "random".

    Lloyd iterations run on a random sample of `sample` points (all of them if fewer); then
    every point gets its nearest centroid. `weights` ([N], >= 0) make centroids weighted means
    (and weight the k-means++ seeding), so heavy points are represented more closely."""
    x = torch.from_numpy(np.ascontiguousarray(data, np.float32))
    n = len(x)
    if n == 0:
        return np.zeros((0, x.shape[1] if x.ndim == 2 else 0), np.float32), np.zeros(0, np.int64)
    rng = np.random.default_rng(seed)
    if n <= k:
        return x.numpy().copy(), np.arange(n)
    xn = x.numpy()
    # Centroids are fitted on a sample of at most `sample` points; every point is then assigned.
    w = None if weights is None else np.asarray(weights, np.float64)
    if n <= sample:
        pool = x
    else:
        pick = rng.permutation(n)[:max(sample, k)]
        pool, w = torch.from_numpy(xn[pick]), (None if w is None else w[pick])
    if init == "kmeans++":
        seeds = np.arange(len(pool)) if len(pool) <= max(SEEDING_SAMPLE, k) else \
            rng.permutation(len(pool))[:max(SEEDING_SAMPLE, k)]
        centers = torch.from_numpy(_kmeans_pp(pool.numpy()[seeds], k, rng, None if w is None else w[seeds]))
    else:
        centers = pool[torch.from_numpy(rng.permutation(len(pool))[:k])].clone()
    centers, labels = _lloyd(pool, centers, iterations, w)
    if len(pool) < n:
        labels = _nearest(x, centers)
    return centers.numpy(), labels.numpy()


def palette_kmeans(data: np.ndarray, k: int, iterations: int = 6, seed: int = 0,
                   coarse: int = 256, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(palette [k', D], labels [N]) with k' <= min(k, N), by k-means, two-level when N x k is
    large (see module doc); `weights` [N] as in `kmeans`.

    The palette is ordered along its first principal axis, so similar entries get near indices
    (which keeps images of labels smooth)."""
    x = np.ascontiguousarray(data, np.float32)
    n = len(x)
    w = None if weights is None else np.asarray(weights, np.float64)
    if n <= k:
        palette, labels = x.copy(), np.arange(n)
    elif k <= coarse * 4 or n * k <= FLAT_KMEANS_BUDGET:
        palette, labels = kmeans(x, k, iterations, seed, sample=n, weights=w)
    else:
        # Coarse cells are fitted on every point: cells fitted on a sample cost 4 dB on a test scene.
        cells, cell_of = kmeans(x, coarse, iterations, seed, sample=n, weights=w)
        members = np.argsort(cell_of, kind="stable")
        sizes = np.bincount(cell_of, minlength=len(cells))
        # Each cell's share of the palette, by largest remainder, never more than its points.
        # Shares follow the cells' squared error, not their point counts: a cell of few, spread-out
        # vectors (the outliers whose wrong colours show most) needs entries as much as a dense one.
        err = ((x - cells[cell_of]) ** 2).sum(1).astype(np.float64)
        sse = np.bincount(cell_of, weights=err if w is None else err * w, minlength=len(cells))
        weight = sse if sse.sum() > 0 else sizes.astype(np.float64)
        share = k * weight / weight.sum()
        alloc = np.minimum(np.floor(share).astype(np.int64), sizes)
        alloc = np.maximum(alloc, (sizes > 0).astype(np.int64))
        spare = k - alloc.sum()
        for i in np.argsort(-(share - np.floor(share))):
            if spare <= 0:
                break
            if alloc[i] < sizes[i]:
                alloc[i] += 1
                spare -= 1
        for i in np.argsort(share - alloc):  # the one-entry minimum overshot k: take back the least needed
            if spare >= 0:
                break
            if alloc[i] > 1:
                alloc[i] -= 1
                spare += 1
        # Cells are small (N / coarse points): one thread each. Thread pools woken for thousands
        # of tiny products spin against whatever else runs: on a busy 2-core machine the whole
        # palette of 1M degree-3 Gaussians took 180 s with two threads here, 33 s with one.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            parts, labels = _cluster_cells(x, w, members, sizes, alloc, iterations, seed)
        finally:
            torch.set_num_threads(threads)
        palette = np.concatenate(parts)
    if len(palette) > 1:
        centred = palette - palette.mean(0)
        axis = np.linalg.svd(centred[:: max(1, len(centred) // 4096)], full_matrices=False)[2][0]
        rank = np.argsort(centred @ axis, kind="stable")
        relabel = np.empty_like(rank)
        relabel[rank] = np.arange(len(rank))
        palette, labels = palette[rank], relabel[labels]
    return np.ascontiguousarray(palette, np.float32), np.asarray(labels, np.int64)


def _cluster_cells(x, w, members, sizes, alloc, iterations, seed):
    """Each coarse cell's points clustered into its share of the palette: (parts, labels)."""
    parts, labels = [], np.empty(len(x), np.int64)
    start, base = 0, 0
    for cell, size in enumerate(sizes):
        idx = members[start:start + size]
        start += size
        if size == 0:
            continue
        centers, lab = kmeans(x[idx], int(alloc[cell]), iterations, seed + cell + 1, sample=size,
                              weights=None if w is None else w[idx])
        parts.append(centers)
        labels[idx] = lab + base
        base += len(centers)
    return parts, labels
