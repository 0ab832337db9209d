"""antimatter15 `.splat`: 32 bytes per Gaussian, no header, no SH above degree 0.

Record layout (little-endian): position f32 x3, linear scale (standard deviations) f32 x3, colour
RGBA u8 x4 (RGB = 0.5 + C0 * sh0, A = opacity, both times 255), rotation u8 x4 = q * 128 + 128
with q the unit quaternion (w, x, y, z). The count is the file size / 32.

Quantization (what a round trip gives back): positions and scales exact (float32); colour and
opacity to 1/255 (rounded here; the reference converter truncates); quaternion components to
1/128 before renormalization; SH degrees above 0 are dropped.
"""

from __future__ import annotations

import numpy as np

from splatforge.core.fsutil import atomic_write
from splatforge.core.gaussians import Gaussians
from splatforge.core.sh import C0
from splatforge.errors import FormatError
from splatforge.io.formats.common import (PathLike, arrays_of, gaussians_from, logit, normalized_quats,
                                           read_file_bytes, sigmoid)

RECORD = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])
assert RECORD.itemsize == 32
# A zero scale (a flat splat) decodes to this instead of log(0) = -inf.
_MIN_SCALE = 1e-30


def encode_splat(gaussians: Gaussians) -> bytes:
    """The `.splat` bytes of `gaussians`, in their order (SH above degree 0 dropped)."""
    a = arrays_of(gaussians)
    rec = np.empty(len(a), RECORD)
    rec["position"] = a.means
    with np.errstate(over="ignore"):  # a log scale above ~88 is inf in float32, as in any reader
        rec["scale"] = np.exp(a.scales.astype(np.float64)).astype(np.float32)
    rgb = a.sh0.astype(np.float64) * C0 + 0.5
    rgba = np.concatenate([rgb, sigmoid(a.opacities)[:, None]], axis=1)
    rec["rgba"] = np.clip(np.rint(rgba * 255.0), 0, 255).astype(np.uint8)
    rec["rot"] = np.clip(np.rint(normalized_quats(a.quats) * 128.0 + 128.0), 0, 255).astype(np.uint8)
    return rec.tobytes()


def decode_splat(data: bytes, path: PathLike = "<bytes>") -> Gaussians:
    """Gaussians (SH degree 0) from `.splat` bytes; FormatError if they are not a `.splat`."""
    if len(data) % RECORD.itemsize:
        raise FormatError(f"{path}: {len(data):,} bytes is not a multiple of 32, so it is not a .splat "
                          "file (or it is truncated)")
    rec = np.frombuffer(data, RECORD)
    n = len(rec)
    means = rec["position"].astype(np.float32)
    scales = rec["scale"].astype(np.float32)
    if not np.isfinite(means).all():
        raise FormatError(f"{path}: positions hold NaN or inf values; not a valid .splat file")
    if not (np.isfinite(scales).all() and (scales >= 0).all()):
        raise FormatError(f"{path}: scales hold negative, NaN or inf values; not a valid .splat file")
    q = (rec["rot"].astype(np.float64) - 128.0) / 128.0
    quats = normalized_quats(q)
    rgba = rec["rgba"].astype(np.float64) / 255.0
    sh0 = (rgba[:, :3] - 0.5) / C0
    return gaussians_from(means, np.log(np.maximum(scales, _MIN_SCALE)), quats, logit(rgba[:, 3]), sh0,
                          np.zeros((n, 0, 3), np.float32))


def write_splat(path: PathLike, gaussians: Gaussians) -> None:
    """Write `gaussians` as an antimatter15 `.splat` file (atomically)."""
    atomic_write(path, encode_splat(gaussians))


def read_splat(path: PathLike) -> Gaussians:
    """Read an antimatter15 `.splat` file (CPU float32 Gaussians, SH degree 0)."""
    return decode_splat(read_file_bytes(path, ".splat"), path)
