"""What the splat formats share: float32 views of `Gaussians`, activations, bounded reads and
decompression, smallest-three quaternions, Morton order.

Readers never trust a declared size: every count is checked against the bytes the file holds
(for compressed streams, against the most that many bytes can inflate to) before anything of
that size is allocated, and decompression is streamed with a hard output limit.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch

from splatforge.core.gaussians import Gaussians
from splatforge.errors import FormatError, SplatforgeError

PathLike = Union[str, os.PathLike]

# Deflate cannot expand data by more than 1032:1 (a 258-byte match in about two bits), so a
# stream of `n` compressed bytes never inflates to more than this many bytes.
DEFLATE_MAX_RATIO = 1032
_SH_DEGREE_OF_K = {0: 0, 3: 1, 8: 2, 15: 3}

__all__ = ["SplatArrays", "arrays_of", "gaussians_from", "sigmoid", "logit", "read_file_bytes",
           "inflate_limited", "pack_smallest_three", "unpack_smallest_three", "morton_order",
           "normalized_quats", "PathLike"]


@dataclass
class SplatArrays:
    """Gaussians as contiguous float32 numpy arrays (pre-activation, as `Gaussians`)."""

    means: np.ndarray  # [N, 3]
    scales: np.ndarray  # [N, 3] log
    quats: np.ndarray  # [N, 4] w, x, y, z
    opacities: np.ndarray  # [N] logit
    sh0: np.ndarray  # [N, 3] (the [N, 1, 3] field flattened)
    shN: np.ndarray  # [N, K, 3]

    def __len__(self) -> int:
        return len(self.means)

    @property
    def sh_degree(self) -> int:
        return _SH_DEGREE_OF_K[self.shN.shape[1]]


def arrays_of(gaussians: Gaussians) -> SplatArrays:
    """float32 CPU numpy copies of a `Gaussians`' fields; raises SplatforgeError on NaN/inf, which
    no quantized format can store."""
    if not isinstance(gaussians, Gaussians):
        raise SplatforgeError(f"expected a splatforge Gaussians, got {type(gaussians).__name__}")
    if len(gaussians):  # Gaussians.check_finite cannot reshape N = 0 fields
        gaussians.check_finite()
    as_np = lambda t: np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())  # noqa: E731
    n = len(gaussians)
    return SplatArrays(as_np(gaussians.means), as_np(gaussians.scales), as_np(gaussians.quats),
                       as_np(gaussians.opacities), as_np(gaussians.sh0).reshape(n, 3), as_np(gaussians.shN))


def gaussians_from(means, scales, quats, opacities, sh0, shN) -> Gaussians:  # noqa: N803
    """A CPU float32 `Gaussians` from numpy arrays (sh0 as [N, 3] or [N, 1, 3], shN [N, K, 3])."""
    n = len(means)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return Gaussians(t(means).reshape(n, 3), t(scales).reshape(n, 3), t(quats).reshape(n, 4),
                     t(opacities).reshape(n), t(sh0).reshape(n, 1, 3), t(shN))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))).astype(np.float32)


def logit(p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Inverse sigmoid, clamped off 0 and 1 so decoded opacities stay finite."""
    p = np.clip(np.asarray(p, np.float64), eps, 1.0 - eps)
    return np.log(p / (1.0 - p)).astype(np.float32)


def read_file_bytes(path: PathLike, what: str, max_bytes: int | None = None) -> bytes:
    """The whole file, or SplatforgeError if it cannot be opened / FormatError if too large."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if max_bytes is not None and size > max_bytes:
                raise FormatError(f"{path}: {size:,} bytes is larger than any valid {what} ({max_bytes:,})")
            return f.read()
    except IsADirectoryError as e:
        raise SplatforgeError(f"{path}: is a directory, not a {what} file") from e
    except OSError as e:
        raise SplatforgeError(f"cannot open {path}: {e.strerror or e}") from e


def inflate_limited(path: PathLike, data: bytes, limit: int, wbits: int = 16 + zlib.MAX_WBITS,
                    what: str = "gzip stream") -> tuple[bytes, bool]:
    """Decompress at most `limit` bytes of a gzip (or zlib/raw deflate, by `wbits`) stream.

    Returns the bytes and whether the stream ended within the limit. Corrupt data raises
    FormatError; a stream that goes on past `limit` is not decompressed further.
    """
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(data, limit)
        if len(out) < limit and not d.eof:
            out += d.flush(limit - len(out))  # zlib keeps some output back until flushed
    except zlib.error as e:
        raise FormatError(f"{path}: corrupt {what} ({e})") from None
    if not d.eof and len(out) < limit:
        raise FormatError(f"{path}: the {what} is truncated (it ends before its end marker)")
    return out, d.eof


# ------------------------------------------------------------------- smallest-three quaternions


def normalized_quats(quats: np.ndarray) -> np.ndarray:
    """Unit quaternions; a zero quaternion becomes the identity (w = 1) in the order given."""
    q = np.asarray(quats, np.float64)
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    out = np.where(norm > 0, q / np.where(norm > 0, norm, 1.0), 0.0)
    out[norm[:, 0] == 0, 0] = 1.0
    return out


def pack_smallest_three(quats: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalize, flip so the largest |component| is positive, and drop it.

    Returns (index of the largest component [N] in 0..3, the other three in order [N, 3] in
    [-1/sqrt2, 1/sqrt2]) for callers to quantize with `bits`. Ties go to the lowest index.
    """
    q = normalized_quats(quats)
    largest = np.argmax(np.abs(q), axis=1)
    sign = np.where(q[np.arange(len(q)), largest] < 0, -1.0, 1.0)
    q = q * sign[:, None]
    keep = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest]
    return largest, np.take_along_axis(q, keep, axis=1)


def unpack_smallest_three(largest: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """Inverse of `pack_smallest_three`: [N, 4] with the dropped component sqrt(1 - |rest|^2)."""
    n = len(largest)
    q = np.zeros((n, 4), np.float64)
    keep = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest]
    np.put_along_axis(q, keep, rest, axis=1)
    q[np.arange(n), largest] = np.sqrt(np.maximum(0.0, 1.0 - np.sum(rest.astype(np.float64) ** 2, axis=1)))
    return q


# ---------------------------------------------------------------------------------- Morton order


def _spread_bits_21(v: np.ndarray) -> np.ndarray:
    """Insert two zero bits between each of the low 21 bits (one axis of a 63-bit Morton code)."""
    v = v.astype(np.uint64) & np.uint64(0x1FFFFF)
    for shift, mask in ((32, 0x1F00000000FFFF), (16, 0x1F0000FF0000FF), (8, 0x100F00F00F00F00F),
                        (4, 0x10C30C30C30C30C3), (2, 0x1249249249249249)):
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v


def morton_order(means: np.ndarray) -> np.ndarray:
    """Indices sorting points along a 3D Z-order curve (21 bits per axis over their bounds), so
    consecutive points are near each other: what chunked formats need for tight chunk bounds."""
    n = len(means)
    if n == 0:
        return np.zeros(0, np.int64)
    p = np.asarray(means, np.float64)
    lo, hi = p.min(0), p.max(0)
    extent = np.where(hi - lo > 0, hi - lo, 1.0)
    cells = np.clip(((p - lo) / extent * 2097152.0).astype(np.int64), 0, 2097151)
    code = (_spread_bits_21(cells[:, 0]) | (_spread_bits_21(cells[:, 1]) << np.uint64(1))
            | (_spread_bits_21(cells[:, 2]) << np.uint64(2)))
    return np.argsort(code, kind="stable")
