"""PlayCanvas compressed PLY: chunks of 256 Gaussians with quantized, bit-packed attributes.

Layout (binary little-endian PLY, as SuperSplat and splat-transform write and read it):

- ``element chunk ceil(N/256)``: float32 ``min_x min_y min_z max_x max_y max_z min_scale_x ..
  min_scale_z max_scale_x .. max_scale_z min_r min_g min_b max_r max_g max_b`` (scale bounds are
  log scales clamped to [-20, 20]; colour bounds are of 0.5 + C0 * sh0). Files without the six
  colour bounds are read too (colour then unnormalized).
- ``element vertex N``: uint32 ``packed_position packed_rotation packed_scale packed_color``.
  Position and log scale: 11/10/11 bits (x in the top bits) of the value normalized to the
  chunk's bounds. Colour: 8 bits each of R G B normalized to the chunk's colour bounds, then
  sigmoid(opacity), R in the top byte. Rotation: 2 bits index of the largest |component| of the
  unit quaternion in PLY order (rot_0..rot_3 = w x y z), then the other three in order, 10 bits
  each, as c * sqrt(1/2) + 0.5 with the sign chosen so the largest is positive.
- ``element sh N`` (degree > 0 only): uint8 ``f_rest_0 .. f_rest_{3K-1}`` (INRIA's channel-major
  order), clamp(trunc((c / 8 + 0.5) * 256)), read back as the bin centre (0 and 255 as -4 and 4).

Gaussians are written in Morton order (unless an order is given), so chunks are compact.

Quantization (round-trip tolerances): position within (chunk extent) / 2047 (x, z) or / 1023
(y), half that with rounding; log scale likewise over the chunk's scale range; colour within
(chunk colour range) / 255 / 2; opacity 1/255 in sigmoid space; quaternion components about
0.0007; SH within 1/32, clamped to [-4, 4].
"""

from __future__ import annotations

import math

import numpy as np

from splatforge.core.gaussians import Gaussians
from splatforge.core.sh import C0
from splatforge.errors import FormatError, SplatforgeError
from splatforge.io.formats.common import (PathLike, arrays_of, gaussians_from, logit, morton_order,
                                           pack_smallest_three, sigmoid, unpack_smallest_three)
from splatforge.io.ply_format import read_ply_elements, write_ply_elements

CHUNK_SIZE = 256
CHUNK_PROPS = ("min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
               "min_scale_x", "min_scale_y", "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z",
               "min_r", "min_g", "min_b", "max_r", "max_g", "max_b")
VERTEX_PROPS = ("packed_position", "packed_rotation", "packed_scale", "packed_color")
_SQRT1_2 = math.sqrt(0.5)
_HEADER_PEEK = 1 << 16


# ------------------------------------------------------------------------------------- writing


def _chunk_bounds(values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-chunk min and max of [N, D] values -> ([C, D], [C, D])."""
    chunks = math.ceil(n / CHUNK_SIZE)
    pad = chunks * CHUNK_SIZE - n
    # Repeating the last row fills the final chunk without changing its bounds.
    padded = np.concatenate([values, np.repeat(values[-1:], pad, axis=0)]) if pad else values
    blocks = padded.reshape(chunks, CHUNK_SIZE, -1)
    return blocks.min(1), blocks.max(1)


def _normalize(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(v - lo) / (hi - lo) per row's chunk, clamped to [0, 1]; 0 where the range is tiny."""
    chunk = np.arange(len(values)) // CHUNK_SIZE
    lo, hi = lo[chunk].astype(np.float64), hi[chunk].astype(np.float64)
    span = hi - lo
    t = np.where(span < 1e-5, 0.0, (values - lo) / np.where(span < 1e-5, 1.0, span))
    return np.clip(t, 0.0, 1.0)


def _unorm(t: np.ndarray, bits: int) -> np.ndarray:
    top = (1 << bits) - 1
    return np.clip(np.floor(t * top + 0.5), 0, top).astype(np.uint32)


def _pack_11_10_11(t: np.ndarray) -> np.ndarray:
    return (_unorm(t[:, 0], 11) << np.uint32(21)) | (_unorm(t[:, 1], 10) << np.uint32(11)) | _unorm(t[:, 2], 11)


def compressed_ply_elements(gaussians: Gaussians, order: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The PLY elements (chunk, vertex, and sh when degree > 0) of the compressed layout.

    `order` ([N] permutation) sets the Gaussians' order in the file; None uses Morton order."""
    a = arrays_of(gaussians)
    n = len(a)
    if order is None:
        order = morton_order(a.means)
    order = np.asarray(order)
    if order.shape != (n,) or not np.array_equal(np.sort(order), np.arange(n)):
        raise SplatforgeError(f"order must be a permutation of 0..{n - 1}")
    means, scales = a.means[order].astype(np.float64), a.scales[order].astype(np.float64)
    rgb = a.sh0[order].astype(np.float64) * C0 + 0.5
    chunks = math.ceil(n / CHUNK_SIZE)
    chunk = np.zeros(chunks, np.dtype([(p, "<f4") for p in CHUNK_PROPS]))
    vertex = np.zeros(n, np.dtype([(p, "<u4") for p in VERTEX_PROPS]))
    if n:
        p_lo, p_hi = _chunk_bounds(means, n)
        s_lo, s_hi = (np.clip(b, -20.0, 20.0) for b in _chunk_bounds(scales, n))
        c_lo, c_hi = _chunk_bounds(rgb, n)
        # Bounds are stored as float32: normalize against the stored values, as readers will.
        bounds = np.concatenate([p_lo, p_hi, s_lo, s_hi, c_lo, c_hi], axis=1).astype(np.float32)
        for j, name in enumerate(CHUNK_PROPS):
            chunk[name] = bounds[:, j]
        p_lo, p_hi, s_lo, s_hi, c_lo, c_hi = np.split(bounds, 6, axis=1)
        vertex["packed_position"] = _pack_11_10_11(_normalize(means, p_lo, p_hi))
        vertex["packed_scale"] = _pack_11_10_11(_normalize(scales, s_lo, s_hi))
        col = _normalize(rgb, c_lo, c_hi)
        alpha = sigmoid(a.opacities[order]).astype(np.float64)
        vertex["packed_color"] = ((_unorm(col[:, 0], 8) << np.uint32(24)) | (_unorm(col[:, 1], 8) << np.uint32(16))
                                  | (_unorm(col[:, 2], 8) << np.uint32(8)) | _unorm(alpha, 8))
        largest, rest = pack_smallest_three(a.quats[order], 10)
        rot = largest.astype(np.uint32)
        for j in range(3):
            rot = (rot << np.uint32(10)) | _unorm(rest[:, j] * _SQRT1_2 + 0.5, 10)
        vertex["packed_rotation"] = rot
    elements = {"chunk": chunk, "vertex": vertex}
    k = a.shN.shape[1]
    if k:
        f_rest = a.shN[order].transpose(0, 2, 1).reshape(n, 3 * k).astype(np.float64)
        q = np.clip(np.trunc((f_rest / 8.0 + 0.5) * 256.0), 0, 255).astype(np.uint8)
        sh = np.ascontiguousarray(q).view(np.dtype([(f"f_rest_{i}", "u1") for i in range(3 * k)]))[:, 0]
        elements["sh"] = sh
    return elements


def write_compressed_ply(path: PathLike, gaussians: Gaussians, order: np.ndarray | None = None) -> None:
    """Write `gaussians` as a PlayCanvas compressed PLY (atomically); see the module docstring."""
    write_ply_elements(path, compressed_ply_elements(gaussians, order), comments=["Generated by splatforge"])


# ------------------------------------------------------------------------------------- reading


def is_compressed_ply(path: PathLike) -> bool:
    """Whether a PLY file's header declares the compressed layout (a `chunk` element and packed
    vertex properties). Reads only the start of the file."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEADER_PEEK)
    except OSError:
        return False
    head = head.split(b"end_header", 1)[0]
    return b"\nelement chunk " in head and b" packed_position" in head


def _fields(path: PathLike, arr: np.ndarray, element: str, names, kind: str, size: int) -> None:
    have = arr.dtype.names or ()
    for name in names:
        if name not in have:
            raise FormatError(f"{path}: compressed PLY element '{element}' lacks the property '{name}'")
        dt = arr.dtype[name]
        if dt == object or dt.kind != kind or dt.itemsize != size:
            want = {"f": "float", "u": "uint" if size == 4 else "uchar"}[kind]
            raise FormatError(f"{path}: compressed PLY property '{element}.{name}' must be {want}, got {dt}")


def decode_compressed_ply_elements(elements: dict[str, np.ndarray], path: PathLike = "<elements>") -> Gaussians:
    """Gaussians from the elements of a compressed PLY (as `read_ply_elements` returns them)."""
    if "chunk" not in elements or "vertex" not in elements:
        raise FormatError(f"{path}: not a compressed PLY (it needs 'chunk' and 'vertex' elements)")
    chunk, vertex = elements["chunk"], elements["vertex"]
    n = len(vertex)
    has_color = "min_r" in (chunk.dtype.names or ())
    _fields(path, chunk, "chunk", CHUNK_PROPS if has_color else CHUNK_PROPS[:12], "f", 4)
    _fields(path, vertex, "vertex", VERTEX_PROPS, "u", 4)
    if len(chunk) != math.ceil(n / CHUNK_SIZE):
        raise FormatError(f"{path}: {len(chunk)} chunks for {n} Gaussians; the compressed layout has "
                          f"ceil(N / 256) = {math.ceil(n / CHUNK_SIZE)}")
    k = 0
    if "sh" in elements:
        sh = elements["sh"]
        names = sh.dtype.names or ()
        if len(names) not in (9, 24, 45) or len(sh) != n:
            raise FormatError(f"{path}: the 'sh' element must have 9, 24 or 45 properties and {n} rows, "
                              f"got {len(names)} and {len(sh)}")
        _fields(path, sh, "sh", [f"f_rest_{i}" for i in range(len(names))], "u", 1)
        k = len(names) // 3
    bounds = {name: chunk[name].astype(np.float64)[np.arange(n) // CHUNK_SIZE]
              for name in (CHUNK_PROPS if has_color else CHUNK_PROPS[:12])}
    if not all(np.isfinite(b).all() for b in bounds.values()):
        raise FormatError(f"{path}: chunk bounds hold NaN or inf values")

    def unorm(v: np.ndarray, shift: int, bits: int) -> np.ndarray:
        return ((v >> np.uint32(shift)) & np.uint32((1 << bits) - 1)).astype(np.float64) / ((1 << bits) - 1)

    def lerp(prefix: str, axis: str, t: np.ndarray) -> np.ndarray:
        lo, hi = bounds[f"min_{prefix}{axis}"], bounds[f"max_{prefix}{axis}"]
        return lo * (1.0 - t) + hi * t

    def unpack_111011(v: np.ndarray, prefix: str) -> np.ndarray:
        parts = (unorm(v, 21, 11), unorm(v, 11, 10), unorm(v, 0, 11))
        return np.stack([lerp(prefix, axis, t) for axis, t in zip("xyz", parts)], axis=1)

    means = unpack_111011(vertex["packed_position"], "")
    scales = unpack_111011(vertex["packed_scale"], "scale_")
    color = vertex["packed_color"]
    rgb_t = [unorm(color, 24, 8), unorm(color, 16, 8), unorm(color, 8, 8)]
    rgb = np.stack([lerp("", c, t) if has_color else t for c, t in zip("rgb", rgb_t)], axis=1)
    opacities = logit(unorm(color, 0, 8))
    rot = vertex["packed_rotation"]
    rest = np.stack([(unorm(rot, s, 10) - 0.5) / _SQRT1_2 for s in (20, 10, 0)], axis=1)
    quats = unpack_smallest_three((rot >> np.uint32(30)).astype(np.int64), rest)
    shn = np.zeros((n, k, 3), np.float32)
    if k:
        q = np.stack([elements["sh"][f"f_rest_{i}"] for i in range(3 * k)], axis=1).astype(np.float64)
        t = np.where(q == 0, 0.0, np.where(q == 255, 1.0, (q + 0.5) / 256.0))
        shn = ((t - 0.5) * 8.0).reshape(n, 3, k).transpose(0, 2, 1)
    return gaussians_from(means, scales, quats, opacities, (rgb - 0.5) / C0, shn)


def read_compressed_ply(path: PathLike) -> Gaussians:
    """Read a PlayCanvas compressed PLY into CPU float32 Gaussians, in file order."""
    return decode_compressed_ply_elements(read_ply_elements(path).elements, path)
