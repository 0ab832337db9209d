"""PLAS layout, k-means codebooks, SOG round trips, and the compress / convert commands."""

import json
import zipfile

import numpy as np
import pytest
import torch

from splatforge.cli import parse_command_line
from splatforge.compress import PlasConfig, kmeans, neighbour_distance, palette_kmeans, plas_order, quantize_1d
from splatforge.compress.quality import compare_scenes
from splatforge.compress.sog import SogConfig, encode_sog, pixel_weights
from splatforge.errors import SplatforgeError
from splatforge.io.formats.sog import encode_webp, image_size, read_sog, write_sog
from splatforge.io.scene import load_scene, save_scene

from .conftest import make_gaussians, quat_angle_error


def test_plas_makes_neighbours_similar_and_is_a_permutation():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(3000, 3)).astype(np.float32)
    width, _ = image_size(3000)
    order = plas_order(feats, width, PlasConfig(seed=1))
    assert np.array_equal(np.sort(order), np.arange(3000))
    random = neighbour_distance(feats, rng.permutation(3000), width)
    assert neighbour_distance(feats, order, width) < 0.35 * random
    assert np.array_equal(order, plas_order(feats, width, PlasConfig(seed=1)))  # deterministic


def test_quantize_1d_bounds_outliers_and_exact_small_sets():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(-5, 0.3, 20000), [3.0]])
    cb = quantize_1d(v)
    assert cb.shape == (256,) and np.all(np.diff(cb) >= 0)
    err = np.abs(cb[np.abs(v[:, None] - cb[None]).argmin(1)] - v)
    assert err.max() < (v.max() - v.min()) / 32 and err.mean() < 0.01
    np.testing.assert_array_equal(quantize_1d(np.array([1.0, 2.0, 2.0]))[:2], [1.0, 2.0])


def test_quantize_1d_is_the_optimal_weighted_codebook():
    # 1D k-means optima are contiguous runs of the sorted values: try every split into 3 runs.
    rng = np.random.default_rng(2)
    v = np.sort(rng.normal(0, 1, 12))
    w = rng.uniform(0.1, 1, 12)

    def sse(cb):
        return float((w * (v - cb[np.abs(v[:, None] - cb[None]).argmin(1)]) ** 2).sum())

    best = min(sse(np.array([np.average(part, weights=wp) for part, wp in zip(np.split(v, [i, j]), np.split(w, [i, j]))]))
               for i in range(1, 11) for j in range(i + 1, 12))
    cb = quantize_1d(v, k=3, importance=w, max_run=0)
    assert sse(cb) == pytest.approx(best, rel=1e-6)
    assert sse(cb) < 0.999 * sse(quantize_1d(v, k=3, max_run=0))  # the weights moved it


def test_quantize_1d_run_width_bounds_the_error_of_values_that_weigh_nothing():
    rng = np.random.default_rng(3)
    v = np.concatenate([rng.uniform(0, 1, 1000), rng.uniform(1, 10, 50)])
    w = np.concatenate([np.ones(1000), np.full(50, 1e-9)])

    def max_error(cb):
        return np.abs(cb[np.abs(v[:, None] - cb[None]).argmin(1)] - v).max()

    assert max_error(quantize_1d(v, k=8, importance=w, max_run=0)) > 5  # all entries on the heavy values
    assert max_error(quantize_1d(v, k=8, importance=w, max_run=4)) <= (v.max() - v.min()) / 4


def test_quantize_1d_importance_puts_entries_where_errors_cost_most():
    # Many small values and a few spread-out large ones (as log scales of a scene's Gaussians):
    # weighted by importance (footprint area), the large ones get the codebook's precision.
    rng = np.random.default_rng(1)
    v = np.concatenate([rng.normal(-5, 0.5, 50000), rng.uniform(-2, 2, 300)])
    importance = np.exp(2 * v)

    def tail_error(cb):
        tail = v[-300:]
        return np.abs(cb[np.abs(tail[:, None] - cb[None]).argmin(1)] - tail).mean()

    plain, weighted = quantize_1d(v), quantize_1d(v, importance=importance)
    assert tail_error(weighted) < 0.3 * tail_error(plain)
    assert weighted.shape == (256,) and np.all(np.diff(weighted) >= 0)


def test_pixel_weights_grow_with_opacity_and_footprint():
    g = make_gaussians(3, sh_degree=0)
    g.scales = torch.log(torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 0.1], [2.0, 2.0, 0.1]]))
    g.opacities = torch.tensor([0.0, 0.0, -3.0])  # sigmoid 0.5, 0.5, 0.047
    per_gaussian, per_scale = pixel_weights(g)
    np.testing.assert_allclose(per_gaussian[1] / per_gaussian[0], 4.0, rtol=1e-5)  # twice as wide, twice as tall
    np.testing.assert_allclose(per_gaussian[2] / per_gaussian[1], torch.sigmoid(torch.tensor(-3.0)).item() / 0.5,
                               rtol=1e-5)
    # a scale weighs as the ellipse through its axis and the largest one: the thin axis of the
    # second Gaussian sweeps 2 x 0.1, its wide ones 2 x 2
    np.testing.assert_allclose(per_scale[1] / per_scale[0, 0], [4.0, 4.0, 0.2], rtol=1e-5)


def test_palette_kmeans_two_level_beats_random_palette():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(50, 9))
    x = (centers[rng.integers(0, 50, 20000)] + rng.normal(0, 0.05, (20000, 9))).astype(np.float32)
    palette, labels = palette_kmeans(x, 2048, iterations=4, coarse=16)
    assert len(palette) <= 2048 and labels.max() < len(palette)
    err = ((palette[labels] - x) ** 2).sum(1).mean()
    assert err < 0.05 * 9 * 0.05**2 * 20  # far below the cluster noise's spread around random picks


@pytest.mark.parametrize("degree", [0, 1, 3])
@pytest.mark.parametrize("n", [0, 1, 300])
def test_sog_round_trip_bundle_and_folder(tmp_path, n, degree):
    g = make_gaussians(n, sh_degree=degree)
    for target in (tmp_path / "a.sog", tmp_path / "folder"):
        save_scene(g, target, format="sog", palette_size=64)
        h = load_scene(target)
        assert len(h) == n and h.sh_degree == degree
    with zipfile.ZipFile(tmp_path / "a.sog") as zf:
        meta = json.loads(zf.read("meta.json"))
    assert meta["version"] == 2 and meta["count"] == n
    assert len(meta["scales"]["codebook"]) == 256 and ("shN" in meta) == (degree > 0)
    if n == 0:
        return
    content = encode_sog(g, SogConfig(palette_size=64))
    order = _texel_order(g, h)
    gg = g[order]
    # 16-bit log-space positions: |dx| <= (|x| + 1) * range / 65535 / 2 (plus float slack), or
    # up to the default position slack: a tenth of the Gaussian's smallest standard deviation.
    span = (np.log1p(50) * 2) / 65535
    slack = SogConfig().position_slack * gg.scales.min(1, keepdim=True).values.exp()
    assert ((h.means - gg.means).abs() <= torch.maximum((gg.means.abs() + 1) * span, slack) + 1e-4).all()
    assert quat_angle_error(h.quats, gg.quats).max() < 0.01
    assert (torch.sigmoid(h.opacities) - torch.sigmoid(gg.opacities)).abs().max() <= 0.5 / 255 + 1e-6
    # every log scale within 1/32 of their range of 7 (quantize_1d's run width limit): entries
    # crowd where the large Gaussians are, the width limit bounds the small ones' error
    assert (h.scales - gg.scales).abs().max() <= 7 / 32
    assert content.count == n


def _texel_order(g, h):
    """Which original Gaussian each decoded one is (nearest position)."""
    d = torch.cdist(h.means.double(), g.means.double())
    return d.argmin(1)


def test_compare_scenes_detects_damage():
    g = make_gaussians(400, sh_degree=1)
    same = compare_scenes(g, g.clone(), n_views=2, width=64, height=48)
    assert same.psnr == float("inf") and same.ssim == pytest.approx(1.0)
    moved = g.clone()
    moved.sh0 += 1.0
    assert compare_scenes(g, moved, n_views=2, width=64, height=48).psnr < 40


def _run(argv):
    """Parse and run a command; its SplatforgeError propagates (cli.main would print it, exit 2)."""
    command, options = parse_command_line(argv)
    command.run(options)


def test_cli_compress_and_convert_print_sizes_ratio_and_quality(tmp_path, capsys):
    g = make_gaussians(500, sh_degree=2)
    save_scene(g, tmp_path / "in.ply")
    _run(["compress", str(tmp_path / "in.ply"), "-o", str(tmp_path / "out.sog"), "--views", "2",
          "--width", "64", "--height", "48", "--palette-size", "64"])
    out = capsys.readouterr().out
    assert "bytes" in out and "ratio" in out and "PSNR" in out and "SSIM" in out
    assert len(read_sog(tmp_path / "out.sog")) == 500
    _run(["convert", str(tmp_path / "out.sog"), str(tmp_path / "back.spz"), "--views", "2",
          "--width", "64", "--height", "48"])
    assert "PSNR" in capsys.readouterr().out
    with pytest.raises(SplatforgeError):
        _run(["compress", str(tmp_path / "in.ply"), "-o", str(tmp_path / "out.spz"), "--views", "0"])


def test_sog_position_slack_moves_gaussians_by_at_most_that_fraction_of_their_size(tmp_path):
    g = make_gaussians(3000, sh_degree=0, seed=3)
    g.means = g.means / 25  # a room-sized scene: +-2 units, Gaussians of 1-20 cm
    g.scales = g.scales.clamp(-4.5, -1.5)
    sizes = {}
    for slack in (0.0, 0.1):
        content = encode_sog(g, SogConfig(position_slack=slack, plas_iterations=2))
        write_sog(tmp_path / f"s{slack}.sog", content)
        h = load_scene(tmp_path / f"s{slack}.sog")
        gg = g[_texel_order(g, h)]
        moved = (h.means - gg.means).abs().double()
        half_step = (gg.means.abs().double() + 1) * torch.expm1(
            (torch.tensor(content.means_maxs) - torch.tensor(content.means_mins)).double() / 65535 / 2)
        allowed = torch.maximum(half_step, slack * gg.scales.min(1, keepdim=True).values.exp().double())
        assert (moved <= allowed * (1 + 1e-6) + 1e-6).all(), f"slack {slack}: moved {float((moved - allowed).max())} too far"
        sizes[slack] = len(encode_webp(content.means_l))
    # ... and the dropped low bits make the low-byte image smaller.
    assert sizes[0.1] < 0.9 * sizes[0.0], sizes


def test_weighted_kmeans_centroids_are_weighted_means():
    x = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 10.0], [11.0, 10.0]], np.float32)
    w = np.array([3.0, 1.0, 1.0, 1.0])
    centers, labels = kmeans(x, 2, iterations=5, seed=0, weights=w)
    near = centers[labels[0]]
    np.testing.assert_allclose(near, [0.25, 0.0], atol=1e-6)  # (3 * 0 + 1 * 1) / 4
    np.testing.assert_allclose(centers[labels[2]], [10.5, 10.0], atol=1e-6)


@pytest.mark.parametrize("k", [300, 1000])
def test_two_level_palette_never_exceeds_k(k):
    # Many tiny outlying clusters each claim an entry; the palette must still hold at most k.
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.01, (4000, 6)), rng.normal(0, 5, (300, 6))]).astype(np.float32)
    palette, labels = palette_kmeans(x, k, iterations=2, coarse=64)
    assert len(palette) <= k and labels.max() < len(palette)
