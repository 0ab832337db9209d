"""PlayCanvas SOG, version 2: `meta.json` plus lossless WebP images, as a folder or a `.sog` zip.

Every image is RGBA; texel i (row-major) holds Gaussian i, for i < `count`. After
playcanvas/splat-transform (writer and reader) and the PlayCanvas engine:

- ``means_l.webp`` / ``means_u.webp``: low / high byte of a 16-bit value per axis (R G B = x y z)
  of sign(p) * log(|p| + 1), normalized to ``means.mins`` / ``means.maxs`` (which are in that log
  space).
- ``quats.webp``: smallest three of the unit quaternion (w, x, y, z) with its largest |component|
  made positive, the other three in order as 255 * (c * sqrt2 / 2 + 0.5); A = 252 + index of the
  dropped component.
- ``scales.webp``: R G B index ``scales.codebook`` (256 log scales).
- ``sh0.webp``: R G B index ``sh0.codebook`` (256 sh0 coefficients); A = 255 * sigmoid(opacity).
- ``shN_centroids.webp`` / ``shN_labels.webp`` (degree > 0): a palette of ``shN.count`` SH
  vectors, each K texels wide in an image 64 * K wide (palette entry e at texels e*K .. e*K+K-1,
  coefficient j's R G B index ``shN.codebook``), and per Gaussian a 16-bit palette index (R low
  byte, G high byte). ``shN.bands`` is the SH degree.

This module is the codec: `pack_sog` turns Gaussians plus the quantization (order, codebooks,
palette; `splatforge.compress` computes them) into images, `write_sog` stores them, `read_sog`
decodes any conforming SOG. Readers check every declared size against `count` before decoding.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from splatforge.core.fsutil import atomic_write
from splatforge.core.gaussians import Gaussians
from splatforge.errors import FormatError, SplatforgeError
from splatforge.io.formats.common import (PathLike, arrays_of, gaussians_from, logit, pack_smallest_three,
                                           sigmoid, unpack_smallest_three)

SOG_VERSION = 2  # the one version read and written
_SQRT2 = math.sqrt(2.0)
_MAX_META_BYTES = 16 << 20
_MAX_COUNT = 16383 * 16383  # WebP's largest image
_PALETTE_WIDTH = 64
_WEBP_SLACK = 1 << 20  # header and worst-case coding overhead of a lossless WebP, bytes


@dataclass
class ShNContent:
    bands: int  # SH degree, 1..3
    codebook: np.ndarray  # [256] float32
    centroids: np.ndarray  # [ceil(count / 64), 64 * K, 4] uint8
    labels: np.ndarray  # [H, W, 4] uint8
    count: int  # palette entries


@dataclass
class SogContent:
    """Everything a SOG holds: meta values and the RGBA images ([H, W, 4] uint8)."""

    count: int
    means_mins: list[float]
    means_maxs: list[float]
    means_l: np.ndarray
    means_u: np.ndarray
    quats: np.ndarray
    scales: np.ndarray
    scales_codebook: np.ndarray  # [256] float32
    sh0: np.ndarray
    sh0_codebook: np.ndarray  # [256] float32
    shN: ShNContent | None = None

    def meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "version": SOG_VERSION,
            "asset": {"generator": "splatforge"},
            "count": self.count,
            "means": {"mins": self.means_mins, "maxs": self.means_maxs,
                      "files": ["means_l.webp", "means_u.webp"]},
            "scales": {"codebook": _floats(self.scales_codebook), "files": ["scales.webp"]},
            "quats": {"files": ["quats.webp"]},
            "sh0": {"codebook": _floats(self.sh0_codebook), "files": ["sh0.webp"]},
        }
        if self.shN is not None:
            meta["shN"] = {"count": self.shN.count, "bands": self.shN.bands,
                           "codebook": _floats(self.shN.codebook),
                           "files": ["shN_centroids.webp", "shN_labels.webp"]}
        return meta

    def images(self) -> dict[str, np.ndarray]:
        out = {"means_l.webp": self.means_l, "means_u.webp": self.means_u, "quats.webp": self.quats,
               "scales.webp": self.scales, "sh0.webp": self.sh0}
        if self.shN is not None:
            out["shN_centroids.webp"] = self.shN.centroids
            out["shN_labels.webp"] = self.shN.labels
        return out


def _floats(values: np.ndarray) -> list[float]:
    """float32 values as the shortest decimals that read back as the same float32 (readers parse
    JSON numbers as doubles and store float32): 768 codebook numbers take ~9 KB less than their
    double expansions, which is 0.4 bytes per Gaussian in a 20k-Gaussian scene."""
    return [float(np.format_float_positional(v, unique=True, trim="-")) if np.isfinite(v) else float(v)
            for v in np.asarray(values, np.float32)]


def image_size(count: int) -> tuple[int, int]:
    """(width, height) of the per-Gaussian images: splat-transform's near-square multiple of 4."""
    if count == 0:
        return 4, 4
    width = math.ceil(math.sqrt(count) / 4) * 4
    return width, math.ceil(count / width / 4) * 4


def log_transform(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def nearest_in_codebook(values: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Index of the nearest codebook entry for each value (uint8 for a 256-entry codebook)."""
    order = np.argsort(codebook, kind="stable")
    sorted_cb = codebook[order].astype(np.float64)
    mids = (sorted_cb[1:] + sorted_cb[:-1]) / 2.0
    return order[np.searchsorted(mids, values.astype(np.float64), side="right")].astype(np.uint8)


def _to_texels(values: np.ndarray, width: int, height: int, fill: int = 0) -> np.ndarray:
    """[count, 4] uint8 rows -> [H, W, 4] image, texels past `count` set to `fill`."""
    img = np.full((height * width, 4), fill, np.uint8)
    img[:len(values)] = values
    return img.reshape(height, width, 4)


def pack_sog(
    gaussians: Gaussians,
    order: np.ndarray,  # [N]: texel i holds Gaussian order[i]
    scales_codebook: np.ndarray,  # [256]
    sh0_codebook: np.ndarray,  # [256]
    shn_palette: np.ndarray | None = None,  # [P, K, 3] SH vectors (degree > 0)
    shn_labels: np.ndarray | None = None,  # [N] palette index of each Gaussian (in Gaussian order)
    shn_codebook: np.ndarray | None = None,  # [256]
    position_tolerance: np.ndarray | None = None,  # [N] world units, per Gaussian (in Gaussian order)
) -> SogContent:
    """Encode Gaussians into SOG images given the quantization decisions (see module docstring).

    `position_tolerance`: how far each Gaussian may move. Its 16-bit position codes are then
    rounded to the coarsest multiple of 2^b (b <= 8) that keeps it within that distance per axis,
    which zeroes low bits of means_l.webp and lets WebP store it in fewer bytes; None keeps full
    precision (half a 16-bit step)."""
    a = arrays_of(gaussians)
    n = len(a)
    order = np.asarray(order, np.int64)
    if order.shape != (n,) or not np.array_equal(np.sort(order), np.arange(n)):
        raise SplatforgeError(f"order must be a permutation of 0..{n - 1}")
    for name, cb in (("scales_codebook", scales_codebook), ("sh0_codebook", sh0_codebook)):
        if np.shape(cb) != (256,):
            raise SplatforgeError(f"{name} must have 256 entries, got shape {np.shape(cb)}")
    width, height = image_size(n)
    if width > 16383 or height > 16383:
        raise SplatforgeError(f"SOG images are at most 16383 texels wide; {n:,} Gaussians do not fit")

    lt = log_transform(a.means[order].astype(np.float64))
    mins = lt.min(0) if n else np.zeros(3)
    maxs = lt.max(0) if n else np.zeros(3)
    span = maxs - mins
    exact = 65535.0 * (lt - mins) / np.where(span > 0, span, 1.0)
    q16 = np.clip(np.rint(exact), 0, 65535).astype(np.int64)
    if position_tolerance is not None and n:
        tol = np.asarray(position_tolerance, np.float64)
        if tol.shape != (n,):
            raise SplatforgeError(f"position_tolerance must be [N] = [{n}], got shape {tol.shape}")
        tol = tol[order][:, None]
        reach = np.abs(a.means[order].astype(np.float64)) + 1.0  # |dx / d(log-space value)| <= |x| + 1 ...
        chosen, done = q16.astype(np.float64), np.zeros(q16.shape, bool)
        for bits in range(8, 0, -1):
            coarse = np.clip(np.rint(exact / (1 << bits)) * (1 << bits), 0, 65535)
            moved = reach * np.expm1(np.abs(coarse - exact) * span / 65535.0)  # ... times e^(its change)
            take = ~done & (moved <= tol)
            chosen, done = np.where(take, coarse, chosen), done | take
        q16 = chosen.astype(np.int64)
    alpha = np.full((n, 1), 255, np.uint8)
    means_l = _to_texels(np.concatenate([(q16 & 0xFF).astype(np.uint8), alpha], 1), width, height)
    means_u = _to_texels(np.concatenate([(q16 >> 8).astype(np.uint8), alpha], 1), width, height)

    largest, rest = pack_smallest_three(a.quats[order], 8)
    rest_u8 = np.clip(np.rint(255.0 * (rest * _SQRT2 * 0.5 + 0.5)), 0, 255).astype(np.uint8)
    quats = _to_texels(np.concatenate([rest_u8, (252 + largest).astype(np.uint8)[:, None]], 1), width, height)

    scales_cb = np.asarray(scales_codebook, np.float32)
    scale_idx = nearest_in_codebook(a.scales[order], scales_cb)
    scales = _to_texels(np.concatenate([scale_idx, alpha], 1), width, height)

    sh0_cb = np.asarray(sh0_codebook, np.float32)
    sh0_idx = nearest_in_codebook(a.sh0[order], sh0_cb)
    opacity = np.clip(np.rint(sigmoid(a.opacities[order]).astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    sh0 = _to_texels(np.concatenate([sh0_idx, opacity[:, None]], 1), width, height)

    shn = None
    k = a.shN.shape[1]
    if k:
        if shn_palette is None or shn_labels is None or shn_codebook is None:
            raise SplatforgeError("SH degree > 0 needs shn_palette, shn_labels and shn_codebook")
        palette = np.asarray(shn_palette, np.float32)
        p = len(palette)
        if palette.shape != (p, k, 3) or not 1 <= p <= 65536:
            raise SplatforgeError(f"shn_palette must be [P, {k}, 3] with 1 <= P <= 65536, got {palette.shape}")
        labels = np.asarray(shn_labels, np.int64)[order]
        if labels.shape != (n,) or (n and (labels.min() < 0 or labels.max() >= p)):
            raise SplatforgeError(f"shn_labels must be [N] indices into the {p}-entry palette")
        shn_cb = np.asarray(shn_codebook, np.float32)
        if shn_cb.shape != (256,):
            raise SplatforgeError(f"shn_codebook must have 256 entries, got shape {shn_cb.shape}")
        idx = nearest_in_codebook(palette.reshape(-1), shn_cb).reshape(p, k, 3)
        rows = math.ceil(p / _PALETTE_WIDTH)
        cent = np.zeros((rows * _PALETTE_WIDTH * k, 4), np.uint8)
        cent[:p * k, :3] = idx.reshape(p * k, 3)
        cent[:p * k, 3] = 255
        lab = np.stack([labels & 0xFF, labels >> 8, np.zeros(n, np.int64), np.full(n, 255)], 1).astype(np.uint8)
        shn = ShNContent(bands=a.sh_degree, codebook=shn_cb, centroids=cent.reshape(rows, _PALETTE_WIDTH * k, 4),
                         labels=_to_texels(lab, width, height), count=p)
    return SogContent(count=n, means_mins=[float(v) for v in mins], means_maxs=[float(v) for v in maxs],
                      means_l=means_l, means_u=means_u, quats=quats, scales=scales, scales_codebook=scales_cb,
                      sh0=sh0, sh0_codebook=sh0_cb, shN=shn)


# ------------------------------------------------------------------------------------- writing


def encode_webp(image: np.ndarray, method: int = 4) -> bytes:
    """Lossless WebP bytes of an [H, W, 4] uint8 image; RGB under alpha 0 is kept (exact)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image), "RGBA").save(
        buf, "WEBP", lossless=True, quality=100 if method >= 5 else 50, method=method, exact=True)
    return buf.getvalue()


def sog_layout(path: PathLike) -> tuple[str, Path]:
    """("bundle", zip path) for `.sog`, else ("folder", meta.json path): `path` may name the
    meta.json or the folder."""
    path = Path(path)
    if path.suffix.lower() == ".sog":
        return "bundle", path
    if path.name.lower().endswith("meta.json"):
        return "folder", path
    return "folder", path / "meta.json"


def write_sog(path: PathLike, content: SogContent, webp_method: int = 4) -> None:
    """Write a SOG: a `.sog` path gets the zip bundle, otherwise a folder (or its meta.json path)
    gets meta.json and the WebP images. `webp_method` 0-6 trades encoding time for size."""
    kind, target = sog_layout(path)
    meta = json.dumps(content.meta(), separators=(",", ":")).encode()
    files = {name: encode_webp(img, webp_method) for name, img in content.images().items()}
    if kind == "bundle":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr("meta.json", meta)
            for name, data in files.items():
                zf.writestr(name, data)
        atomic_write(target, buf.getvalue())
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        atomic_write(target.parent / name, data)
    atomic_write(target, meta)


def sog_size(path: PathLike) -> int:
    """Bytes on disk of a SOG: the bundle, or meta.json plus the images it names."""
    kind, target = sog_layout(path)
    if kind == "bundle":
        return os.path.getsize(target)
    meta = json.loads(target.read_text())
    names = [f for key in ("means", "scales", "quats", "sh0", "shN") if key in meta for f in meta[key]["files"]]
    return os.path.getsize(target) + sum(os.path.getsize(target.parent / n) for n in names)


# ------------------------------------------------------------------------------------- reading


class _Source:
    """Named files of a SOG, from a zip or a folder, each read with a byte limit."""

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        self.zip: zipfile.ZipFile | None = None
        try:
            if self.path.is_dir():
                self.folder = self.path
            elif self.path.name.lower().endswith("meta.json"):
                self.folder = self.path.parent
            else:
                self.zip = zipfile.ZipFile(self.path)
        except zipfile.BadZipFile as e:
            raise FormatError(f"{path}: not a SOG bundle (not a readable zip file: {e})") from None
        except OSError as e:
            raise SplatforgeError(f"cannot open {path}: {e.strerror or e}") from e

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()

    def read(self, name: str, limit: int) -> bytes:
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise FormatError(f"{self.path}: meta.json names the file {name!r}; SOG files are plain names "
                              "beside meta.json")
        if self.zip is None:
            file = self.folder / name
            try:
                with open(file, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    if size > limit:
                        raise FormatError(f"{file}: {size:,} bytes is more than its declared contents can "
                                          f"need ({limit:,}); not a valid SOG file")
                    return f.read()
            except OSError as e:
                raise FormatError(f"{self.path}: cannot read {name} ({e.strerror or e})") from None
        try:
            with self.zip.open(name) as f:
                data = f.read(limit + 1)
        except KeyError:
            raise FormatError(f"{self.path}: the bundle has no {name}") from None
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError, EOFError,
                RuntimeError, ValueError) as e:
            raise FormatError(f"{self.path}: cannot read {name} from the bundle ({e})") from None
        except Exception as e:  # zlib.error, lzma/bz2 errors on corrupt entries
            raise FormatError(f"{self.path}: corrupt bundle entry {name} ({type(e).__name__}: {e})") from None
        if len(data) > limit:
            raise FormatError(f"{self.path}: {name} inflates to more than its declared contents can need "
                              f"({limit:,} bytes); not a valid SOG (or a zip bomb)")
        return data


def _meta_error(path: PathLike, what: str) -> FormatError:
    return FormatError(f"{path}: meta.json {what}")


def _number_list(path: PathLike, value: Any, length: int, key: str) -> np.ndarray:
    if (not isinstance(value, list) or len(value) != length
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise _meta_error(path, f"'{key}' must be a list of {length} numbers")
    arr = np.asarray(value, np.float64)
    if not np.isfinite(arr).all():
        raise _meta_error(path, f"'{key}' holds NaN or inf")
    return arr


def _section(path: PathLike, meta: dict, key: str, files: int) -> dict:
    sec = meta.get(key)
    if not isinstance(sec, dict):
        raise _meta_error(path, f"has no '{key}' object")
    names = sec.get("files")
    if not isinstance(names, list) or len(names) != files or not all(isinstance(n, str) for n in names):
        raise _meta_error(path, f"'{key}.files' must list {files} file name(s)")
    return sec


def _int(path: PathLike, value: Any, key: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise _meta_error(path, f"'{key}' must be an integer in {lo}..{hi}, got {value!r}")
    return value


def _decode_webp(source: _Source, name: str, max_pixels: int, min_pixels: int,
                 width: int | None = None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    data = source.read(name, 4 * max_pixels + _WEBP_SLACK)
    try:
        with Image.open(io.BytesIO(data), formats=["WEBP"]) as im:
            w, h = im.size
            if w * h > max_pixels or w * h < min_pixels or (width is not None and w != width):
                need = f"{width} wide, " if width is not None else ""
                raise FormatError(f"{source.path}: {name} is {w}x{h}; it must be {need}with "
                                  f"{min_pixels:,} to {max_pixels:,} texels for this SOG's count")
            rgba = np.asarray(im.convert("RGBA"))
    except FormatError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise FormatError(f"{source.path}: {name} is not a readable WebP image ({e})") from None
    return rgba.reshape(-1, 4)


def _check_version(path: PathLike, version: Any) -> None:
    if version == SOG_VERSION:
        return
    if isinstance(version, int) and not isinstance(version, bool) and version > SOG_VERSION:
        raise FormatError(f"{path}: SOG version {version} is newer than splatforge reads (SOG version "
                          f"{SOG_VERSION}, what splat-transform 3.7 writes). "
                          "Update splatforge, or convert the file to PLY with the tool that wrote it")
    found = "no version" if version is None else f"version {version!r}"
    raise _meta_error(path, f"declares {found}; splatforge reads SOG version {SOG_VERSION} only (what "
                            "splat-transform 3.7 writes): write the scene again as SOG version 2")


def read_sog(path: PathLike) -> Gaussians:
    """Read a SOG (version 2): a `.sog` zip bundle, a folder holding meta.json, or meta.json."""
    source = _Source(path)
    try:
        return _read(source)
    finally:
        source.close()


def _read(source: _Source) -> Gaussians:
    path = source.path
    try:
        meta = json.loads(source.read("meta.json", _MAX_META_BYTES))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise FormatError(f"{path}: meta.json is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise _meta_error(path, "is not a JSON object")
    _check_version(path, meta.get("version"))
    n = _int(path, meta.get("count"), "count", 0, _MAX_COUNT)
    # Writers pick the image shape; any shape holding `count` texels is valid, but no sane one
    # has more than about 4x the texels (a power-of-two grid) plus a few rows.
    max_px = 4 * n + 65536
    means = _section(path, meta, "means", 2)
    mins = _number_list(path, means.get("mins"), 3, "means.mins")
    maxs = _number_list(path, means.get("maxs"), 3, "means.maxs")
    scales_sec = _section(path, meta, "scales", 1)
    scales_cb = _number_list(path, scales_sec.get("codebook"), 256, "scales.codebook")
    quats_sec = _section(path, meta, "quats", 1)
    sh0_sec = _section(path, meta, "sh0", 1)
    sh0_cb = _number_list(path, sh0_sec.get("codebook"), 256, "sh0.codebook")

    lo = _decode_webp(source, means["files"][0], max_px, n)[:n].astype(np.int64)
    hi = _decode_webp(source, means["files"][1], max_px, n)[:n].astype(np.int64)
    v = (lo[:, :3] | (hi[:, :3] << 8)).astype(np.float64) / 65535.0
    lt = mins + (maxs - mins) * v
    with np.errstate(over="ignore"):
        xyz = np.sign(lt) * np.expm1(np.abs(lt))
    if not np.isfinite(xyz.astype(np.float32)).all():
        raise FormatError(f"{path}: means.mins/maxs decode to positions beyond float32")

    qt = _decode_webp(source, quats_sec["files"][0], max_px, n)[:n]
    tag = qt[:, 3].astype(np.int64)
    valid = (tag >= 252) & (tag <= 255)
    rest = (qt[:, :3].astype(np.float64) / 255.0 * 2.0 - 1.0) / _SQRT2
    quats = unpack_smallest_three(np.where(valid, tag - 252, 0), rest)
    quats[~valid] = (1.0, 0.0, 0.0, 0.0)

    sc = _decode_webp(source, scales_sec["files"][0], max_px, n)[:n]
    scales = scales_cb[sc[:, :3]]
    s0 = _decode_webp(source, sh0_sec["files"][0], max_px, n)[:n]
    sh0 = sh0_cb[s0[:, :3]]
    opacities = logit(s0[:, 3].astype(np.float64) / 255.0)

    shn = np.zeros((n, 0, 3), np.float32)
    if "shN" in meta:
        shn_sec = _section(path, meta, "shN", 2)
        bands = _int(path, shn_sec.get("bands"), "shN.bands", 1, 3)
        count = _int(path, shn_sec.get("count"), "shN.count", 1, 65536)
        shn_cb = _number_list(path, shn_sec.get("codebook"), 256, "shN.codebook")
        k = (bands + 1) ** 2 - 1
        rows = math.ceil(count / _PALETTE_WIDTH)
        cen = _decode_webp(source, shn_sec["files"][0], _PALETTE_WIDTH * k * (rows + 4), _PALETTE_WIDTH * k * rows,
                           width=_PALETTE_WIDTH * k)
        lab = _decode_webp(source, shn_sec["files"][1], max_px, n)[:n].astype(np.int64)
        labels = lab[:, 0] | (lab[:, 1] << 8)
        ok = labels < count
        texel = np.where(ok, labels, 0)[:, None] * k + np.arange(k)[None, :]  # [n, k], inside cen
        shn = shn_cb[cen[texel, :3]]
        shn[~ok] = 0.0
    return gaussians_from(xyz, scales, quats, opacities, sh0, shn)
