"""Niantic SPZ: read versions 2 and 3, write version 3 (a gzip stream of packed attributes).

Layout of the decompressed stream (little-endian), after nianticlabs/spz: a 16-byte header
(magic 0x5053474e "NGSP", version u32, count u32, SH degree u8, fractional bits u8, flags u8 with
0x1 = antialiased, reserved u8), then attribute blocks, each for all Gaussians in order:
positions (3 x 24-bit signed fixed point with `fractional bits`), alphas (sigmoid * 255), colours
(sh0 * 0.15 * 255 + 127.5), scales ((log scale + 10) * 16), rotations (version 2: x y z as
q * 127.5 + 127.5 with w >= 0; version 3: "smallest three" in 32 bits: 2 bits index of the largest
of x y z w, then for the other three in order 1 sign bit and 9 bits of |c| / sqrt(1/2)), SH
(per Gaussian, per coefficient, R G B as round(c * 128) + 128 snapped to buckets of 2^(8-bits),
bits = 5 for degree 1 and 4 above). Values are stored as given, with no axis flips (what
splat-transform reads and writes; the spz library's PLY tools convert RDF <-> RUB).

Quantization (round-trip tolerances): positions 2^-fractional bits (we choose the most bits,
at most 12, that hold the largest |coordinate| in 24 bits); log scales 1/16; opacity 1/255 in
sigmoid space; sh0 1/(0.15 * 255) = 0.026; quaternion components about 0.0014; SH degree 1 within
4/128 and higher within 8/128 (clamped to [-1, 1]).
"""

from __future__ import annotations

import gzip
import math
import struct

import numpy as np

from splatforge.core.gaussians import Gaussians
from splatforge.errors import FormatError, SplatforgeError
from splatforge.io.formats._common import (DEFLATE_MAX_RATIO, PathLike, arrays_of, gaussians_from,
                                           inflate_limited, logit, pack_smallest_three, read_file_bytes,
                                           sigmoid, unpack_smallest_three, write_atomic)

MAGIC = 0x5053474E
HEADER = struct.Struct("<IIIBBBB")
COLOR_SCALE = 0.15
FLAG_ANTIALIASED = 0x1
SH1_BITS, SH_REST_BITS = 5, 4
_SQRT1_2 = math.sqrt(0.5)
_MAX_FRACTIONAL_BITS = 12
_GZIP_MAGIC = b"\x1f\x8b"


def _bytes_per_gaussian(version: int, sh_degree: int) -> int:
    return 9 + 1 + 3 + 3 + (3 if version == 2 else 4) + 3 * ((sh_degree + 1) ** 2 - 1)


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _quantize_sh(x: np.ndarray, bits: int) -> np.ndarray:
    bucket = 1 << (8 - bits)
    q = np.rint(x.astype(np.float64) * 128.0).astype(np.int64) + 128
    q = (q + bucket // 2) // bucket * bucket
    return np.clip(q, 0, 255).astype(np.uint8)


def encode_spz(gaussians: Gaussians, antialiased: bool = False) -> bytes:
    """SPZ version 3 bytes (gzip) of `gaussians`, in their order."""
    a = arrays_of(gaussians)
    n, degree = len(a), a.sh_degree
    reach = float(np.abs(a.means).max()) if n else 0.0
    # The most fractional bits whose 24-bit signed range still holds every coordinate.
    bits = _MAX_FRACTIONAL_BITS
    while bits > 0 and reach * (1 << bits) > (1 << 23) - 1:
        bits -= 1
    if reach * (1 << bits) > (1 << 23) - 1:
        raise SplatforgeError(f"SPZ stores positions as 24-bit integers; a coordinate of {reach:.4g} does "
                              "not fit (|x| must be < 8,388,607)")
    fixed = np.rint(a.means.astype(np.float64) * (1 << bits)).astype(np.int32)
    positions = fixed.astype("<i4").view(np.uint8).reshape(n, 3, 4)[:, :, :3]

    alphas = _to_u8(sigmoid(a.opacities).astype(np.float64) * 255.0)
    colors = _to_u8(a.sh0.astype(np.float64) * (COLOR_SCALE * 255.0) + 127.5)
    scales = _to_u8((a.scales.astype(np.float64) + 10.0) * 16.0)

    xyzw = a.quats[:, [1, 2, 3, 0]]
    largest, rest = pack_smallest_three(xyzw, 9)
    mags = np.floor(511.0 * np.abs(rest) / _SQRT1_2 + 0.5).astype(np.uint32)
    mags = np.minimum(mags, 511)
    signs = (rest < 0).astype(np.uint32)
    comp = largest.astype(np.uint32)
    for j in range(3):
        comp = (comp << np.uint32(10)) | (signs[:, j] << np.uint32(9)) | mags[:, j]
    rotations = comp.astype("<u4").view(np.uint8).reshape(n, 4)

    k = a.shN.shape[1]
    sh = np.empty((n, k, 3), np.uint8)
    if k:
        sh[:, :3] = _quantize_sh(a.shN[:, :3], SH1_BITS)
        sh[:, 3:] = _quantize_sh(a.shN[:, 3:], SH_REST_BITS)

    header = HEADER.pack(MAGIC, 3, n, degree, bits, FLAG_ANTIALIASED if antialiased else 0, 0)
    raw = b"".join([header, positions.tobytes(), alphas.tobytes(), colors.tobytes(), scales.tobytes(),
                    rotations.tobytes(), sh.tobytes()])
    return gzip.compress(raw, compresslevel=6, mtime=0)


def decode_spz(data: bytes, path: PathLike = "<bytes>") -> Gaussians:
    """Gaussians from SPZ bytes (gzip, versions 2 and 3; an uncompressed stream is accepted too)."""
    gzipped = data[:2] == _GZIP_MAGIC
    if gzipped:
        head, _ = inflate_limited(path, data, HEADER.size)
    else:
        head = data[:HEADER.size]
    if len(head) < HEADER.size:
        raise FormatError(f"{path}: {len(head)} bytes is too short for an SPZ header ({HEADER.size} bytes)")
    magic, version, n, degree, bits, flags, _ = HEADER.unpack(head)
    if magic != MAGIC:
        raise FormatError(f"{path}: not an SPZ file (no 'NGSP' magic{'' if gzipped else ' and not gzip'})")
    if version not in (2, 3):
        extra = " (version 4 uses zstd streams)" if version == 4 else ""
        raise FormatError(f"{path}: SPZ version {version} is not supported{extra}; this reader takes 2 and 3")
    if degree > 3:
        raise FormatError(f"{path}: SPZ header declares SH degree {degree}; supported are 0-3")
    if bits > 24:
        raise FormatError(f"{path}: SPZ header declares {bits} fractional bits; at most 24 fit a 24-bit value")
    need = HEADER.size + n * _bytes_per_gaussian(version, degree)
    most = len(data) * DEFLATE_MAX_RATIO if gzipped else len(data)
    if need > most:
        raise FormatError(f"{path}: the SPZ header declares {n:,} Gaussians ({need:,} bytes), more than a "
                          f"{len(data):,}-byte file can hold (truncated file or corrupt header)")
    if gzipped:
        raw, _ = inflate_limited(path, data, need)
    else:
        raw = data[:need]
    if len(raw) < need:
        raise FormatError(f"{path}: SPZ data is truncated: {n:,} Gaussians need {need:,} bytes, "
                          f"the stream holds {len(raw):,}")
    return _unpack(raw, version, n, degree, bits)


def _unpack(raw: bytes, version: int, n: int, degree: int, bits: int) -> Gaussians:
    buf = np.frombuffer(raw, np.uint8, offset=HEADER.size)
    k = (degree + 1) ** 2 - 1
    rot_bytes = 3 if version == 2 else 4
    sizes = [9 * n, n, 3 * n, 3 * n, rot_bytes * n, 3 * k * n]
    pos, alpha, col, scl, rot, sh = np.split(buf[:sum(sizes)], np.cumsum(sizes)[:-1])

    p = pos.reshape(n, 3, 3).astype(np.int32)
    fixed = p[..., 0] | (p[..., 1] << 8) | (p[..., 2] << 16)
    fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)
    means = fixed.astype(np.float64) / (1 << bits)

    opacities = logit(alpha.astype(np.float64) / 255.0)
    sh0 = (col.reshape(n, 3).astype(np.float64) / 255.0 - 0.5) / COLOR_SCALE
    scales = scl.reshape(n, 3).astype(np.float32) / 16.0 - 10.0

    if version == 2:
        xyz = rot.reshape(n, 3).astype(np.float64) / 127.5 - 1.0
        w = np.sqrt(np.maximum(0.0, 1.0 - np.sum(xyz**2, axis=1)))
        quats = np.concatenate([w[:, None], xyz], axis=1)
    else:
        comp = rot.reshape(n, 4).copy().view("<u4")[:, 0].astype(np.int64)
        largest = comp >> 30
        rest = np.empty((n, 3), np.float64)
        for j in (2, 1, 0):  # the last component packed sits in the lowest bits
            mag = comp & 511
            sign = np.where((comp >> 9) & 1, -1.0, 1.0)
            rest[:, j] = sign * _SQRT1_2 * mag / 511.0
            comp = comp >> 10
        xyzw = unpack_smallest_three(largest, rest)
        quats = xyzw[:, [3, 0, 1, 2]]

    shn = (sh.reshape(n, k, 3).astype(np.float32) - 128.0) / 128.0
    return gaussians_from(means, scales, quats, opacities, sh0, shn)


def write_spz(path: PathLike, gaussians: Gaussians, antialiased: bool = False) -> None:
    """Write `gaussians` as an SPZ version 3 file (atomically)."""
    write_atomic(path, [encode_spz(gaussians, antialiased=antialiased)])


def read_spz(path: PathLike) -> Gaussians:
    """Read an SPZ file (versions 2 and 3) into CPU float32 Gaussians."""
    return decode_spz(read_file_bytes(path, "SPZ"), path)
