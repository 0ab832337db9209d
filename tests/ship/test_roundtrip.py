"""Round trips per format: values come back within each format's stated quantization."""

import numpy as np
import pytest
import torch

from splatforge.core.sh import C0
from splatforge.io.formats.common import morton_order
from splatforge.io.formats.compressed_ply import write_compressed_ply, read_compressed_ply
from splatforge.io.formats.splat import read_splat, write_splat
from splatforge.io.formats.spz import read_spz, write_spz
from splatforge.io.scene import detect_format, load_scene, save_scene

from .conftest import make_gaussians, quat_angle_error

SIZES = [0, 1, 300]  # 300: not a multiple of 256


def sigmoid(x):
    return torch.sigmoid(x)


def maxabs(x: torch.Tensor) -> float:
    return float(x.abs().max()) if x.numel() else 0.0


@pytest.mark.parametrize("n", SIZES)
def test_splat_round_trip(tmp_path, n):
    g = make_gaussians(n, sh_degree=2)
    path = tmp_path / "a.splat"
    write_splat(path, g)
    assert path.stat().st_size == 32 * n
    h = read_splat(path)
    assert len(h) == n and h.sh_degree == 0
    torch.testing.assert_close(h.means, g.means)  # float32: exact
    torch.testing.assert_close(h.scales, g.scales, atol=1e-5, rtol=0)
    assert maxabs(h.rgb() - g.rgb().clamp(0, 1)) <= 0.5 / 255 + 1e-6
    assert maxabs(sigmoid(h.opacities) - sigmoid(g.opacities)) <= 0.5 / 255 + 1e-6
    if n:
        assert quat_angle_error(h.quats, g.quats).max() < 0.02  # 1/128 per component, renormalized


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
@pytest.mark.parametrize("n", SIZES)
def test_spz_round_trip(tmp_path, n, degree, version):
    g = make_gaussians(n, sh_degree=degree)
    path = tmp_path / "a.spz"
    write_spz(path, g, version=version)
    assert path.read_bytes()[:4] == (b"\x1f\x8b\x08\x00" if version == 3 else b"NGSP")
    h = read_spz(path)
    assert len(h) == n and h.sh_degree == degree
    assert maxabs(h.means - g.means) <= 0.5 / 2**12 + 1e-6  # |x| < 2048: 12 fractional bits
    assert maxabs(h.scales - g.scales) <= 0.5 / 16 + 1e-6
    assert maxabs(sigmoid(h.opacities) - sigmoid(g.opacities)) <= 0.5 / 255 + 1e-6
    assert maxabs(h.sh0 - g.sh0) <= 0.5 / (0.15 * 255) + 1e-5
    if n:
        assert quat_angle_error(h.quats, g.quats).max() < 0.003
        if degree:
            assert (h.shN[:, :3] - g.shN[:, :3]).abs().max() <= 4.5 / 128 + 1e-6  # half a bucket of 8 plus the 1/128 rounding
            assert maxabs(h.shN[:, 3:] - g.shN[:, 3:]) <= 8.5 / 128 + 1e-6


def test_spz_large_coordinates_use_fewer_fractional_bits(tmp_path):
    g = make_gaussians(10, sh_degree=0)
    g.means[0, 0] = 5000.0
    write_spz(tmp_path / "b.spz", g)
    h = read_spz(tmp_path / "b.spz")
    assert (h.means - g.means).abs().max() <= 0.5 / 2**10 + 1e-6


def test_spz_reads_version_2(tmp_path):
    # A version-2 stream built by hand: one Gaussian at (1, -2, 0.5), identity-ish rotation.
    import gzip
    import struct

    header = struct.pack("<IIIBBBB", 0x5053474E, 2, 1, 0, 12, 0, 0)
    pos = b"".join(int(round(v * 4096)).to_bytes(4, "little", signed=True)[:3] for v in (1.0, -2.0, 0.5))
    body = pos + bytes([255]) + bytes([128, 128, 128]) + bytes([160, 160, 160]) + bytes([128, 128, 128])
    (tmp_path / "v2.spz").write_bytes(gzip.compress(header + body))
    h = read_spz(tmp_path / "v2.spz")
    torch.testing.assert_close(h.means[0], torch.tensor([1.0, -2.0, 0.5]))
    torch.testing.assert_close(h.scales[0], torch.full((3,), 0.0))
    assert h.quats[0, 0] > 0.99


@pytest.mark.parametrize("degree", [0, 1, 3])
@pytest.mark.parametrize("n", SIZES + [600])
def test_compressed_ply_round_trip(tmp_path, n, degree):
    g = make_gaussians(n, sh_degree=degree)
    path = tmp_path / "a.compressed.ply"
    order = np.arange(n)
    write_compressed_ply(path, g, order=order)
    h = read_compressed_ply(path)
    assert len(h) == n and h.sh_degree == degree
    for i in range(0, n, 256):  # tolerances follow each chunk's bounds
        s = slice(i, i + 256)
        ext = g.means[s].amax(0) - g.means[s].amin(0)
        step = ext / torch.tensor([2047.0, 1023.0, 2047.0])
        assert ((h.means[s] - g.means[s]).abs() <= step / 2 + 1e-4 * (1 + ext)).all()
        sext = g.scales[s].amax(0) - g.scales[s].amin(0)
        assert ((h.scales[s] - g.scales[s]).abs() <= sext / 1023 / 2 + 1e-4).all()
        cext = g.rgb()[s].amax(0) - g.rgb()[s].amin(0)
        assert ((h.rgb()[s] - g.rgb()[s]).abs() <= cext / 255 / 2 + 1e-4).all()
    assert maxabs(sigmoid(h.opacities) - sigmoid(g.opacities)) <= 0.5 / 255 + 1e-6
    if n:
        assert quat_angle_error(h.quats, g.quats).max() < 0.002
        if degree:
            assert (h.shN - g.shN).abs().max() <= 1 / 32 + 1e-6


def test_compressed_ply_default_order_is_morton(tmp_path):
    g = make_gaussians(700, sh_degree=0)
    save_scene(g, tmp_path / "m.compressed.ply")
    assert detect_format(tmp_path / "m.compressed.ply") == "compressed-ply"
    h = load_scene(tmp_path / "m.compressed.ply")
    expected = g.means[torch.from_numpy(morton_order(g.means.numpy()))]
    assert (h.means - expected).abs().max() < 0.1


def test_ply_detection_by_magic_not_extension(tmp_path):
    g = make_gaussians(5, sh_degree=1)
    save_scene(g, tmp_path / "x.spz")
    (tmp_path / "x.spz").rename(tmp_path / "x.bin")
    assert detect_format(tmp_path / "x.bin") == "spz"
    save_scene(g, tmp_path / "p.ply")
    assert detect_format(tmp_path / "p.ply") == "ply"
    torch.testing.assert_close(load_scene(tmp_path / "p.ply").shN, g.shN)
