"""splat-transform (PlayCanvas, npm `@playcanvas/splat-transform`) and splatforge read each other's
files: it converts every format we write to PLY and the values match ours; the SOG, SPZ and
compressed PLY it writes load with `load_scene` and match the scene we gave it.

Tolerances are each format's quantization, worked out from its bit depths or from the codebooks
in the file itself (half a step; a unit quaternion's largest component, rebuilt from the other
three, moves by at most three times their error), plus float32 rounding. They are not fitted
to what passes.
"""

from __future__ import annotations

import gzip
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from splatforge.compress.sog import SogConfig, compress_scene
from splatforge.core.gaussians import Gaussians
from splatforge.io.formats.compressed_ply import CHUNK_SIZE
from splatforge.io.formats.spz import SH1_BITS, SH_REST_BITS
from splatforge.io.ply import read_ply, write_ply
from splatforge.io.ply_format import read_ply_elements
from splatforge.io.scene import load_scene, save_scene

from .scenes import C0, assert_within, differences, random_scene

F32 = 1e-5  # float32 rounding of values of order 1 through a decode (sums, logs, exps)
OPACITY = 0.5 / 255 + F32  # every format stores sigmoid(opacity) in 8 bits


def quat_tolerance(component_half_step: float) -> float:
    """Unit quaternion from smallest three: each stored component within the half step, the
    largest (>= 1/2, rebuilt as sqrt(1 - sum c^2)) within sum |c| / w <= 3 times it."""
    return 3.0 * component_half_step + F32


def nearest_gap(values: np.ndarray, codebook) -> float:
    """Largest distance from a value to its nearest codebook entry: a codebook's quantization."""
    cb = np.sort(np.asarray(codebook, np.float64))
    v = np.asarray(values, np.float64).reshape(-1)
    i = np.clip(np.searchsorted(cb, v), 1, len(cb) - 1)
    return float(np.minimum(np.abs(v - cb[i - 1]), np.abs(v - cb[i])).max())


def sog_tolerance(meta: dict, want: Gaussians, rounding: str = "nearest") -> dict[str, float]:
    """From a SOG's meta.json: 16-bit log-space positions, codebook scales / sh0 / shN (the SH
    palette must hold every Gaussian's own vector: see the callers), 8-bit quaternions and
    opacities. splatforge rounds to the nearest level (half a step); splat-transform 3.7's writer
    truncates (`x & 0xff`, stores into a Uint8Array), which costs up to a whole step."""
    step = {"nearest": 0.5, "truncate": 1.0}[rounding]
    lt_step = (np.asarray(meta["means"]["maxs"]) - np.asarray(meta["means"]["mins"])) / 65535 * step
    reach = want.means.abs().max(0).values.double().numpy() + 1.0
    tol = {"means": float((reach * np.expm1(lt_step)).max()) + F32,
           "scales": nearest_gap(want.scales.numpy(), meta["scales"]["codebook"]) + F32,
           "sh0": nearest_gap(want.sh0.numpy(), meta["sh0"]["codebook"]) + F32,
           "quats": quat_tolerance(math.sqrt(2) / 255 * step), "opacity": step / 255 + F32, "shN": 0.0}
    if want.shN.shape[1]:
        tol["shN"] = nearest_gap(want.shN.numpy(), meta["shN"]["codebook"]) + F32
    return tol


def sog_meta(path: Path) -> dict:
    if path.suffix == ".sog":
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read("meta.json"))
    return json.loads(path.read_text())


def spz_tolerance(path: Path) -> dict[str, float]:
    """SPZ: 24-bit fixed point with the header's fractional bits, log scale in 1/16, sh0 in
    1/(0.15 * 255), 9-bit quaternion magnitudes over [0, sqrt 1/2], SH snapped to 2^(8 - bits)
    buckets of 1/128 after rounding (SH1_BITS for degree 1, SH_REST_BITS above)."""
    data = path.read_bytes()
    head = gzip.decompress(data)[:16] if data[:2] == b"\x1f\x8b" else data[:32]
    degree, fractional_bits = head[12], head[13]
    # Rounding to 1/128, then to the nearest bucket: (0.5 + bucket / 2) / 128.
    bits = SH1_BITS if degree == 1 else min(SH1_BITS, SH_REST_BITS)
    sh_half_step = (0.5 + (1 << (8 - bits)) / 2) / 128
    return {"means": 0.5 / (1 << fractional_bits) + F32, "scales": 0.5 / 16 + F32,
            "sh0": 0.5 / (0.15 * 255) + F32, "quats": quat_tolerance(math.sqrt(0.5) / 511 / 2),
            "opacity": OPACITY, "shN": sh_half_step + F32}


def compressed_ply_tolerance(path: Path) -> dict[str, float]:
    """Compressed PLY: per 256-Gaussian chunk, 11/10/11-bit positions and log scales over the
    chunk's bounds, 8-bit colour over its colour bounds; 10-bit quaternion components over
    [-sqrt 1/2, sqrt 1/2]; SH in 8 bits over [-4, 4] (bin centres: half a bin is 1/64)."""
    chunk = read_ply_elements(path).elements["chunk"]

    def half_step(prefix: str, axes: str, levels) -> float:
        spans = [(chunk[f"max_{prefix}{a}"].astype(np.float64) - chunk[f"min_{prefix}{a}"]) / (lv - 1) / 2
                 for a, lv in zip(axes, levels)]
        return float(max(s.max() for s in spans))

    return {"means": half_step("", "xyz", (2048, 1024, 2048)) * 1.0001 + F32,
            "scales": half_step("scale_", "xyz", (2048, 1024, 2048)) * 1.0001 + F32,
            "sh0": half_step("", "rgb", (256,) * 3) / C0 + F32,
            "quats": quat_tolerance(math.sqrt(2) / 1023 / 2), "opacity": OPACITY, "shN": 8 / 256 / 2 + F32}


def assert_same_scene(got: Gaussians, want: Gaussians, what: str, tolerance: dict[str, float]) -> None:
    assert len(got) == len(want), f"{what}: {len(got)} Gaussians came back, {len(want)} went in"
    assert got.sh_degree == want.sh_degree, f"{what}: SH degree {got.sh_degree}, was {want.sh_degree}"
    assert_within(differences(got, want), tolerance, what)


# --------------------------------------------------------------- splat-transform reads our files


@pytest.mark.parametrize("degree", [0, 3])
def test_splat_transform_reads_our_ply(splat_transform, tmp_path, degree):
    g = random_scene(700, degree, seed=degree)
    write_ply(tmp_path / "ours.ply", g)
    back = read_ply(splat_transform.convert(tmp_path / "ours.ply", tmp_path / "theirs.ply"))
    # PLY to PLY is float32 throughout: only rotations may come back normalized.
    exact = {"means": 0.0, "scales": 0.0, "sh0": 0.0, "opacity": 0.0, "shN": 0.0, "quats": 1e-6}
    assert_same_scene(back, g, "our PLY through splat-transform", exact)


@pytest.mark.parametrize("degree", [0, 3])
def test_splat_transform_reads_our_compressed_ply(splat_transform, tmp_path, degree):
    g = random_scene(1500, degree, seed=10 + degree)  # six chunks, the last one partial
    src = tmp_path / "ours.compressed.ply"
    save_scene(g, src)
    back = read_ply(splat_transform.convert(src, tmp_path / "theirs.ply"))
    assert_same_scene(back, g, "our compressed PLY through splat-transform", compressed_ply_tolerance(src))
    assert len(g) % CHUNK_SIZE  # the partial chunk is exercised


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_splat_transform_reads_our_spz(splat_transform, tmp_path, degree):
    g = random_scene(900, degree, seed=20 + degree)
    src = tmp_path / "ours.spz"
    save_scene(g, src)
    back = read_ply(splat_transform.convert(src, tmp_path / "theirs.ply"))
    assert_same_scene(back, g, "our SPZ v3 through splat-transform", spz_tolerance(src))


def test_splat_transform_reads_our_spz_version_4(splat_transform, tmp_path):
    from splatforge.io.formats.spz import write_spz

    g = random_scene(900, 3, seed=25)
    src = tmp_path / "ours_v4.spz"
    write_spz(src, g, version=4)
    back = read_ply(splat_transform.convert(src, tmp_path / "theirs.ply"))
    assert_same_scene(back, g, "our SPZ v4 through splat-transform", spz_tolerance(src))


@pytest.mark.parametrize("degree, layout", [(0, "bundle"), (3, "bundle"), (3, "folder")])
def test_splat_transform_reads_our_sog(splat_transform, tmp_path, degree, layout):
    n = 1200
    g = random_scene(n, degree, seed=30 + degree)
    src = tmp_path / "ours.sog" if layout == "bundle" else tmp_path / "ours" / "meta.json"
    # A palette as large as the scene holds every Gaussian's own SH vector, so only the
    # codebooks quantize (a smaller palette adds k-means error, which has no a-priori bound);
    # positions at full 16-bit precision (the default lets them move by a fraction of their size).
    compress_scene(g, src, SogConfig(palette_size=n, plas_iterations=1, position_slack=0.0))
    back = read_ply(splat_transform.convert(src, tmp_path / "theirs.ply"))
    assert_same_scene(back, g, f"our SOG ({layout}) through splat-transform", sog_tolerance(sog_meta(src), g))


def test_splat_transform_and_splatforge_decode_our_sog_alike(splat_transform, tmp_path):
    """With the default (lossy, k-means) SH palette both readers must still agree value for value."""
    g = random_scene(2000, 3, seed=40)  # the default palette for 2000: 256 entries
    src = tmp_path / "ours.sog"
    save_scene(g, src, plas_iterations=4)
    ours = load_scene(src)
    theirs = read_ply(splat_transform.convert(src, tmp_path / "theirs.ply"))
    same = {"means": 2e-6 * (1 + float(g.means.abs().max())), "scales": F32, "sh0": F32, "opacity": F32,
            "quats": F32, "shN": F32}
    assert_within(differences(theirs, ours), same, "splat-transform vs splatforge decoding one SOG")


# ------------------------------------------------------ splatforge reads splat-transform's files


@pytest.mark.parametrize("degree", [0, 3])
def test_we_read_splat_transforms_compressed_ply(splat_transform, tmp_path, degree):
    g = random_scene(1500, degree, seed=50 + degree)
    write_ply(tmp_path / "in.ply", g)
    out = splat_transform.convert(tmp_path / "in.ply", tmp_path / "theirs.compressed.ply")
    assert_same_scene(load_scene(out), g, "splat-transform's compressed PLY in splatforge",
                      compressed_ply_tolerance(out))


@pytest.mark.parametrize("version, degree", [(4, 0), (4, 3), (3, 3)])
def test_we_read_splat_transforms_spz(splat_transform, tmp_path, version, degree):
    g = random_scene(900, degree, seed=60 + degree)
    write_ply(tmp_path / "in.ply", g)
    out = splat_transform.convert(tmp_path / "in.ply", tmp_path / "theirs.spz", "--spz-version", str(version))
    head = out.read_bytes()[:8]
    assert (head[:4] == b"NGSP") == (version == 4), f"splat-transform wrote {head!r} for SPZ v{version}"
    assert_same_scene(load_scene(out), g, f"splat-transform's SPZ v{version} in splatforge", spz_tolerance(out))


def palette_scene(n: int, degree: int, distinct: int, seed: int) -> Gaussians:
    """A scene whose SH rest takes only `distinct` different vectors: any k-means palette with
    more entries than that, seeded from the data, holds them exactly, so a SOG written by another
    tool is lossy only through its codebooks (which its meta.json states)."""
    g = random_scene(n, degree, seed)
    rng = np.random.default_rng(seed)
    vectors = torch.from_numpy(rng.uniform(-0.3, 0.3, (distinct, g.shN.shape[1], 3)).astype(np.float32))
    g.shN = vectors[torch.from_numpy(rng.integers(0, distinct, n))]
    return g


@pytest.mark.parametrize("degree, output", [(0, "theirs.sog"), (3, "theirs.sog"), (3, "theirs/meta.json")])
def test_we_read_splat_transforms_sog(splat_transform, tmp_path, degree, output):
    # 1100 Gaussians: splat-transform's palette is min(64, 2^floor(log2(N / 1024))) * 1024 = 1024
    # entries for 16 distinct SH vectors.
    g = palette_scene(1100, degree, distinct=16, seed=70 + degree)
    write_ply(tmp_path / "in.ply", g)
    dst = tmp_path / output
    dst.parent.mkdir(exist_ok=True)
    out = splat_transform.convert(tmp_path / "in.ply", dst, "-i", "4")
    assert_same_scene(load_scene(out), g, f"splat-transform's SOG ({output}) in splatforge",
                      sog_tolerance(sog_meta(out), g, rounding="truncate"))
