"""k-means on the CPU for SOG's codebooks: 1D codebooks (256 values) and SH palettes (up to 64K
vectors), in numpy and torch (matrix products for the distances, so both cores work).

- `quantize_1d`: Lloyd's algorithm in one dimension on a histogram of the values, weighted by
  sqrt(count) so sparse tails (very large Gaussians, saturated colours) keep entries.
- `kmeans`: k-means++ seeding (on a sample when the data is large) and Lloyd iterations.
- `palette_kmeans`: two-level k-means for large palettes: coarse cells first, then each cell's
  share of the palette clustered within the cell, so a point is compared with ~sqrt(k)
  centroids instead of k. Deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np
import torch


def quantize_1d(values: np.ndarray, k: int = 256, iterations: int = 40, bins: int = 4096) -> np.ndarray:
    """A sorted codebook of `k` values for the (flattened, finite) `values`."""
    v = np.asarray(values, np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.zeros(k, np.float32)
    if np.unique(v[: 4 * k + 1]).size <= k:  # cheap test first: few distinct values?
        unique = np.unique(v)
        if unique.size <= k:
            return np.concatenate([unique, np.full(k - unique.size, unique[-1])]).astype(np.float32)
    # Bin edges: half at quantiles (dense regions), half uniform (tails).
    qs = np.quantile(v, np.linspace(0.0, 1.0, bins // 2 + 1))
    edges = np.unique(np.concatenate([qs, np.linspace(v.min(), v.max(), bins // 2 + 1)]))
    which = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, len(edges) - 2)
    counts = np.bincount(which, minlength=len(edges) - 1).astype(np.float64)
    sums = np.bincount(which, weights=v, minlength=len(edges) - 1)
    keep = counts > 0
    centers, counts = sums[keep] / counts[keep], counts[keep]
    weights = np.sqrt(counts)
    if centers.size <= k:
        return np.concatenate([centers, np.full(k - centers.size, centers[-1])]).astype(np.float32)
    # A few entries spread evenly over the range bound the error of rare outliers (huge
    # Gaussians are few but cover many pixels); Lloyd places the rest by density.
    uniform = np.linspace(centers[0], centers[-1], k // 8)
    k_fit = k - len(uniform)
    cum = np.cumsum(weights)
    codebook = centers[np.clip(np.searchsorted(cum, (np.arange(k_fit) + 0.5) / k_fit * cum[-1]), 0, centers.size - 1)]
    codebook = np.unique(codebook)
    for _ in range(iterations):
        mids = (codebook[1:] + codebook[:-1]) / 2.0
        label = np.searchsorted(mids, centers)
        w = np.bincount(label, weights=weights, minlength=codebook.size)
        s = np.bincount(label, weights=weights * centers, minlength=codebook.size)
        new = np.where(w > 0, s / np.where(w > 0, w, 1.0), codebook)
        new = np.unique(new)
        if new.size == codebook.size and np.allclose(new, codebook, rtol=0, atol=1e-9):
            codebook = new
            break
        codebook = new
    codebook = np.unique(np.concatenate([codebook, uniform]))
    if codebook.size < k:  # merged entries: split the widest gaps
        extra = []
        gaps = np.diff(codebook)
        for i in np.argsort(gaps)[::-1][: k - codebook.size]:
            extra.append((codebook[i] + codebook[i + 1]) / 2.0)
        codebook = np.unique(np.concatenate([codebook, extra]))
        if codebook.size < k:
            codebook = np.concatenate([codebook, np.full(k - codebook.size, codebook[-1])])
    return codebook.astype(np.float32)


def _nearest(x: torch.Tensor, c: torch.Tensor, chunk: int = 32768) -> torch.Tensor:
    """Index of the nearest row of c for each row of x (squared Euclidean)."""
    c_sq = (c * c).sum(1)
    out = torch.empty(len(x), dtype=torch.long)
    for s in range(0, len(x), chunk):
        xs = x[s:s + chunk]
        d = c_sq[None, :] - 2.0 * (xs @ c.T)
        out[s:s + chunk] = d.argmin(1)
    return out


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    n = len(x)
    chosen = [int(rng.integers(n))]
    d2 = ((x - x[chosen[0]]) ** 2).sum(1)
    for _ in range(1, k):
        total = float(d2.sum())
        idx = int(rng.integers(n)) if total <= 0 else int(np.searchsorted(np.cumsum(d2), rng.random() * total))
        idx = min(idx, n - 1)
        chosen.append(idx)
        np.minimum(d2, ((x - x[idx]) ** 2).sum(1), out=d2)
    return x[chosen].copy()


def _lloyd(x: torch.Tensor, centers: torch.Tensor, iterations: int) -> tuple[torch.Tensor, torch.Tensor]:
    for _ in range(iterations):
        labels = _nearest(x, centers).numpy()
        # Sums per cluster by sorting and reduceat (torch's index_add_ is slow on small CPU tensors).
        order = np.argsort(labels, kind="stable")
        sorted_labels = labels[order]
        starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
        sums = np.add.reduceat(x.numpy()[order].astype(np.float64), starts, axis=0)
        counts = np.diff(np.r_[starts, len(labels)])
        new = centers.numpy().copy()
        new[sorted_labels[starts]] = (sums / counts[:, None]).astype(np.float32)
        centers = torch.from_numpy(new)
    return centers, _nearest(x, centers)


def kmeans(data: np.ndarray, k: int, iterations: int = 10, seed: int = 0, init: str = "kmeans++",
           sample: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """(centroids [k', D], labels [N]) with k' = min(k, N); `init` is "kmeans++" or "random".

    Lloyd iterations run on a random sample of `sample` points (all of them if fewer); then
    every point gets its nearest centroid."""
    x = torch.from_numpy(np.ascontiguousarray(data, np.float32))
    n = len(x)
    if n == 0:
        return np.zeros((0, x.shape[1] if x.ndim == 2 else 0), np.float32), np.zeros(0, np.int64)
    rng = np.random.default_rng(seed)
    if n <= k:
        return x.numpy().copy(), np.arange(n)
    xn = x.numpy()
    # Centroids are fitted on a sample of at most `sample` points; every point is then assigned.
    pool = x if n <= sample else torch.from_numpy(xn[rng.permutation(n)[:max(sample, k)]])
    if init == "kmeans++":
        centers = torch.from_numpy(_kmeans_pp(pool.numpy(), k, rng))
    else:
        centers = pool[torch.from_numpy(rng.permutation(len(pool))[:k])].clone()
    centers, labels = _lloyd(pool, centers, iterations)
    if len(pool) < n:
        labels = _nearest(x, centers)
    return centers.numpy(), labels.numpy()


def palette_kmeans(data: np.ndarray, k: int, iterations: int = 6, seed: int = 0,
                   coarse: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(palette [k', D], labels [N]) with k' <= min(k, N), by two-level k-means (see module doc).

    The palette is ordered along its first principal axis, so similar entries get near indices
    (which keeps images of labels smooth)."""
    x = np.ascontiguousarray(data, np.float32)
    n = len(x)
    if n <= k:
        palette, labels = x.copy(), np.arange(n)
    elif k <= coarse * 4:
        palette, labels = kmeans(x, k, iterations, seed)
    else:
        # Coarse cells are fitted on every point: cells fitted on a sample cost 4 dB on a test scene.
        cells, cell_of = kmeans(x, coarse, iterations, seed, sample=n)
        members = np.argsort(cell_of, kind="stable")
        sizes = np.bincount(cell_of, minlength=len(cells))
        # Each cell's share of the palette, by largest remainder, never more than its points.
        share = k * sizes / n
        alloc = np.minimum(np.floor(share).astype(np.int64), sizes)
        alloc = np.maximum(alloc, (sizes > 0).astype(np.int64))
        spare = k - alloc.sum()
        for i in np.argsort(-(share - np.floor(share))):
            if spare <= 0:
                break
            if alloc[i] < sizes[i]:
                alloc[i] += 1
                spare -= 1
        parts, labels = [], np.empty(n, np.int64)
        start, base = 0, 0
        for cell, size in enumerate(sizes):
            idx = members[start:start + size]
            start += size
            if size == 0:
                continue
            centers, lab = kmeans(x[idx], int(alloc[cell]), iterations, seed + cell + 1, init="random",
                                  sample=size)
            parts.append(centers)
            labels[idx] = lab + base
            base += len(centers)
        palette = np.concatenate(parts)
    if len(palette) > 1:
        centred = palette - palette.mean(0)
        axis = np.linalg.svd(centred[:: max(1, len(centred) // 4096)], full_matrices=False)[2][0]
        rank = np.argsort(centred @ axis, kind="stable")
        relabel = np.empty_like(rank)
        relabel[rank] = np.arange(len(rank))
        palette, labels = palette[rank], relabel[labels]
    return np.ascontiguousarray(palette, np.float32), np.asarray(labels, np.int64)
