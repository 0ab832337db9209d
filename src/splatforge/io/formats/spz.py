"""Niantic SPZ: read versions 2, 3 and 4, write version 3 (default) or 4.

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

Version 4 (nianticlabs/spz since 2026, splat-transform 3.7's default) packs the same attribute
blocks, each as its own zstd stream, behind a plain 32-byte header: magic, version u32, count
u32, SH degree u8, fractional bits u8, flags u8 (0x2 = extensions follow the header), number of
streams u8, byte offset of the table of contents u32, 12 reserved bytes. The table holds per
stream (compressed size u64, decompressed size u64); the streams follow it back to back in the
block order above, empty blocks (SH at degree 0) left out. Extensions (between header and table)
carry metadata such as a coordinate system tag; they are skipped, as splat-transform does.

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

from splatforge.core.fsutil import atomic_write
from splatforge.core.gaussians import Gaussians
from splatforge.errors import FormatError, SplatforgeError
from splatforge.io.formats.common import (DEFLATE_MAX_RATIO, PathLike, arrays_of, gaussians_from,
                                           inflate_limited, logit, pack_smallest_three, read_file_bytes,
                                           sigmoid, unpack_smallest_three)

MAGIC = 0x5053474E
HEADER = struct.Struct("<IIIBBBB")
HEADER_V4 = struct.Struct("<IIIBBBBI12x")
TOC_ENTRY = struct.Struct("<QQ")
FLAG_HAS_EXTENSIONS = 0x2
VERSIONS_WRITTEN = (3, 4)
VERSIONS_READ = (2, 3, 4)
# The best a zstd stream can do is an RLE block: 128 KiB from 4 bytes. Declared sizes beyond this
# many times the compressed bytes are lies; anything below is still decompressed in slices, so
# memory follows the data actually produced, never the declared size.
ZSTD_MAX_RATIO = 32768
_ZSTD_SLICE = 1 << 22
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


def encode_spz(gaussians: Gaussians, antialiased: bool = False, version: int = 3) -> bytes:
    """SPZ bytes of `gaussians`, in their order: version 3 (one gzip stream, what every SPZ
    reader takes) or 4 (zstd streams, read by nianticlabs/spz 2026+ and splat-transform 3.7+)."""
    if version not in VERSIONS_WRITTEN:
        raise SplatforgeError(f"SPZ version {version} cannot be written; choose 3 or 4")
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

    flags = FLAG_ANTIALIASED if antialiased else 0
    blocks = [positions.tobytes(), alphas.tobytes(), colors.tobytes(), scales.tobytes(), rotations.tobytes(),
              sh.tobytes()]
    if version == 4:
        return _container_v4(n, degree, bits, flags, blocks)
    header = HEADER.pack(MAGIC, 3, n, degree, bits, flags, 0)
    return gzip.compress(b"".join([header, *blocks]), compresslevel=6, mtime=0)


def _zstandard():
    try:
        import zstandard
    except ImportError:
        raise SplatforgeError("SPZ version 4 uses zstd: install the 'zstandard' package "
                              "(pip install zstandard)") from None
    return zstandard


def _container_v4(n: int, degree: int, bits: int, flags: int, blocks: list[bytes]) -> bytes:
    zstd = _zstandard()
    # Level 12, as nianticlabs/spz writes; empty blocks get no stream.
    compressor = zstd.ZstdCompressor(level=12)
    raw = [b for b in blocks if b]
    streams = [compressor.compress(b) for b in raw]
    header = HEADER_V4.pack(MAGIC, 4, n, degree, bits, flags, len(streams), HEADER_V4.size)
    toc = b"".join(TOC_ENTRY.pack(len(c), len(u)) for c, u in zip(streams, raw))
    return b"".join([header, toc, *streams])


def decode_spz(data: bytes, path: PathLike = "<bytes>") -> Gaussians:
    """Gaussians from SPZ bytes: versions 2 and 3 (gzip; an uncompressed stream is accepted too)
    and 4 (zstd streams)."""
    gzipped = data[:2] == _GZIP_MAGIC
    if not gzipped and len(data) >= 8:
        magic, version = struct.unpack_from("<II", data)
        if magic == MAGIC and version >= 4:
            return _decode_v4(data, path)
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
        raise _version_error(path, version, gzipped)
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


def _version_error(path: PathLike, version: int, gzipped: bool) -> FormatError:
    """What a header with an unreadable version gets: the version found and those read."""
    read = f"splatforge reads SPZ versions {VERSIONS_READ[0]}-{VERSIONS_READ[-1]}"
    if version > VERSIONS_READ[-1]:
        return FormatError(f"{path}: SPZ version {version} is newer than {read} (2 and 3 gzipped, 4 with zstd "
                           "streams). Update splatforge, or convert the file to PLY with the tool that wrote it")
    if version == 4 and gzipped:
        return FormatError(f"{path}: a gzipped SPZ declaring version 4, which is never gzipped (it holds zstd "
                           f"streams); {read}: the file is corrupt or was written wrongly")
    return FormatError(f"{path}: SPZ version {version} is not one splatforge reads ({read})")


def _block_sizes(version: int, n: int, degree: int) -> list[int]:
    """Bytes of the positions, alphas, colours, scales, rotations and SH blocks."""
    k = (degree + 1) ** 2 - 1
    return [9 * n, n, 3 * n, 3 * n, (3 if version == 2 else 4) * n, 3 * k * n]


def _decode_v4(data: bytes, path: PathLike) -> Gaussians:
    if len(data) < HEADER_V4.size:
        raise FormatError(f"{path}: {len(data)} bytes is too short for an SPZ version 4 header "
                          f"({HEADER_V4.size} bytes)")
    magic, version, n, degree, bits, flags, num_streams, toc_at = HEADER_V4.unpack_from(data)
    if version != 4:
        raise _version_error(path, version, gzipped=False)
    if degree > 3:
        raise FormatError(f"{path}: SPZ header declares SH degree {degree}; supported are 0-3")
    if bits > 24:
        raise FormatError(f"{path}: SPZ header declares {bits} fractional bits; at most 24 fit a 24-bit value")
    sizes = [size for size in _block_sizes(4, n, degree) if size]
    if num_streams != len(sizes):
        raise FormatError(f"{path}: the SPZ header declares {num_streams} streams; {n:,} Gaussians of SH "
                          f"degree {degree} have {len(sizes)}")
    toc_end = toc_at + TOC_ENTRY.size * num_streams
    if toc_at < HEADER_V4.size or toc_end > len(data):
        raise FormatError(f"{path}: the SPZ table of contents (bytes {toc_at:,}..{toc_end:,}) is not inside "
                          f"the {len(data):,}-byte file after its header")
    zstd = _zstandard()
    blocks, offset = [], toc_end
    for i, want in enumerate(sizes):
        packed, plain = TOC_ENTRY.unpack_from(data, toc_at + i * TOC_ENTRY.size)
        if plain != want:
            raise FormatError(f"{path}: SPZ stream {i} declares {plain:,} bytes; {n:,} Gaussians need {want:,}")
        if packed > len(data) - offset:
            raise FormatError(f"{path}: SPZ stream {i} ({packed:,} bytes at {offset:,}) runs past the end of "
                              f"the {len(data):,}-byte file (truncated file or corrupt table)")
        if plain > packed * ZSTD_MAX_RATIO:
            raise FormatError(f"{path}: SPZ stream {i} declares {plain:,} bytes from {packed:,}, more than "
                              "zstd can produce (corrupt table)")
        blocks.append(_unzstd(zstd, data[offset:offset + packed], plain, path, i))
        offset += packed
    if offset != len(data):
        raise FormatError(f"{path}: {len(data) - offset:,} bytes follow the last SPZ stream (corrupt table)")
    raw = HEADER.pack(MAGIC, 4, n, degree, bits, flags & FLAG_ANTIALIASED, 0) + b"".join(blocks)
    return _unpack(raw, 4, n, degree, bits)


def _unzstd(zstd, data: bytes, size: int, path: PathLike, index: int) -> bytes:
    """Exactly `size` bytes from one zstd stream, decompressed in slices (never more than `size`
    plus one slice held), or FormatError."""
    # A frame needs no window larger than its output, but streaming writers that did not know the
    # size use their level's window (at most 8 MiB up to level 19); capping at the larger of the
    # two stops a hostile frame header from making the decoder reserve up to 2 GiB.
    window = 1 << max(23, min(31, (max(size, 1) - 1).bit_length()))
    out = bytearray()
    try:
        reader = zstd.ZstdDecompressor(max_window_size=window).stream_reader(data, read_across_frames=False)
        while len(out) <= size:
            piece = reader.read(min(_ZSTD_SLICE, size + 1 - len(out)))
            if not piece:
                break
            out += piece
    except zstd.ZstdError as e:
        raise FormatError(f"{path}: SPZ stream {index} is not valid zstd data ({e})") from None
    if len(out) != size:
        got = f"{len(out):,}" if len(out) <= size else "more than that"
        raise FormatError(f"{path}: SPZ stream {index} decompresses to {got} bytes; its table declares {size:,}")
    return bytes(out)


def _unpack(raw: bytes, version: int, n: int, degree: int, bits: int) -> Gaussians:
    buf = np.frombuffer(raw, np.uint8, offset=HEADER.size)
    k = (degree + 1) ** 2 - 1
    sizes = _block_sizes(version, n, degree)
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


def write_spz(path: PathLike, gaussians: Gaussians, antialiased: bool = False, version: int = 3) -> None:
    """Write `gaussians` as an SPZ file (atomically), version 3 (default) or 4."""
    atomic_write(path, encode_spz(gaussians, antialiased=antialiased, version=version))


def read_spz(path: PathLike) -> Gaussians:
    """Read an SPZ file (versions 2, 3 and 4) into CPU float32 Gaussians."""
    return decode_spz(read_file_bytes(path, "SPZ"), path)
