"""Scene filters (splatforge.io.filters and `splatforge filter`): each keeps what its definition says,
decimation keeps the most visible Gaussians and beats a random subsample on a scene with
invisible clutter, and bad input fails naming the problem with no output written."""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np
import pytest
import torch

from splatforge.cli import main
from splatforge.compress.quality import orbit_cameras, render_views
from splatforge.core.gaussians import Gaussians
from splatforge.core.metrics import psnr
from splatforge.errors import SplatforgeError
from splatforge.io.filters import (SceneFilter, crop_box, crop_sphere, decimate, drop_faint, drop_large,
                                   filter_file, filter_scene, random_subsample, sizes, visibility)
from splatforge.io.ply import write_ply
from splatforge.io.scene import load_scene, save_scene

from .conftest import make_gaussians


def _means(g: Gaussians) -> np.ndarray:
    return g.means.numpy().astype(np.float64)


def _rows(g: Gaussians) -> set[tuple]:
    """Each Gaussian's centre, to compare selections without caring about float formats."""
    return {tuple(np.round(m, 4)) for m in _means(g)}


@pytest.fixture
def scene() -> Gaussians:
    return make_gaussians(500, sh_degree=1, seed=3)


def test_crop_box_keeps_exactly_the_centres_inside(scene):
    lo, hi = np.array([-20.0, -30.0, -50.0]), np.array([25.0, 10.0, 0.0])
    kept = crop_box(scene, lo, hi)
    m = _means(scene)
    inside = ((m >= lo) & (m <= hi)).all(1)
    assert 0 < inside.sum() < len(scene)
    np.testing.assert_array_equal(kept.means.numpy(), scene.means.numpy()[inside])  # same order
    for name in ("scales", "quats", "opacities", "sh0", "shN"):  # whole Gaussians travel together
        torch.testing.assert_close(getattr(kept, name), getattr(scene, name)[torch.from_numpy(inside)])


def test_crop_sphere_keeps_exactly_the_centres_within_the_radius(scene):
    centre, radius = np.array([10.0, -5.0, 3.0]), 30.0
    kept = crop_sphere(scene, centre, radius)
    inside = np.linalg.norm(_means(scene) - centre, axis=1) <= radius
    assert 0 < inside.sum() < len(scene)
    np.testing.assert_array_equal(kept.means.numpy(), scene.means.numpy()[inside])


def test_min_opacity_and_max_size_in_world_units_and_as_a_percentile(scene):
    opacity = 1 / (1 + np.exp(-scene.opacities.numpy().astype(np.float64)))
    kept = drop_faint(scene, 0.7)
    assert len(kept) == (opacity >= 0.7).sum() and (kept.activated_opacities() >= 0.7 - 1e-6).all()

    size = np.exp(scene.scales.numpy().astype(np.float64).max(1))  # largest standard deviation
    np.testing.assert_allclose(sizes(scene).numpy(), size, rtol=1e-6)
    kept = drop_large(scene, max_size=0.5)
    np.testing.assert_array_equal(kept.means.numpy(), scene.means.numpy()[size <= 0.5])
    kept = drop_large(scene, percentile=30)
    limit = np.percentile(size, 30)
    assert len(kept) == (size <= limit).sum() and abs(len(kept) - 0.3 * len(scene)) <= 1


def test_decimation_keeps_the_n_highest_opacity_times_area_in_order(scene):
    s = np.exp(np.sort(scene.scales.numpy().astype(np.float64), axis=1))
    score = 1 / (1 + np.exp(-scene.opacities.numpy().astype(np.float64))) * s[:, 1] * s[:, 2]
    np.testing.assert_allclose(np.exp(visibility(scene).numpy()), score, rtol=1e-6)
    kept = decimate(scene, 123)
    best = np.sort(np.argsort(-score, kind="stable")[:123])
    np.testing.assert_array_equal(kept.means.numpy(), scene.means.numpy()[best])
    assert len(random_subsample(scene, 123, seed=1)) == 123
    assert len(decimate(scene, len(scene))) == len(scene)


def _cluttered_scene() -> Gaussians:
    """A surface of 400 large opaque splats plus 400 tiny faint ones that barely show: what
    trained scenes look like to a decimator, with the answer known."""
    gen = torch.Generator().manual_seed(0)
    n = 400
    xy = torch.rand(n, 2, generator=gen) * 2 - 1
    surface = Gaussians.from_points(torch.cat([xy, torch.zeros(n, 1)], 1), torch.rand(n, 3, generator=gen),
                                    sh_degree=0, scale=0.12, opacity=0.9)
    surface.scales[:, 2] = np.log(0.005)  # flat, like trained surface splats
    clutter = Gaussians.from_points(torch.rand(n, 3, generator=gen) * 2 - 1, torch.rand(n, 3, generator=gen),
                                    sh_degree=0, scale=0.004, opacity=0.1)
    return Gaussians.cat([clutter, surface])


def test_decimation_beats_a_random_subsample_on_a_scene_with_invisible_clutter():
    g = _cluttered_scene()
    kept = decimate(g, 400)
    assert (kept.activated_opacities() > 0.5).all()  # the surface, all of it
    viewmats, ks = orbit_cameras(g, 4, 96, 72)
    ref = render_views(g, viewmats, ks, 96, 72)

    def score(sub: Gaussians) -> float:
        out = render_views(sub, viewmats, ks, 96, 72)
        return float(np.mean([psnr(out[i], ref[i]) for i in range(len(out))]))

    assert score(kept) > score(random_subsample(g, 400, seed=0)) + 10


def test_filter_scene_applies_the_filters_in_order_and_decimates_what_is_left(scene):
    spec = SceneFilter(box=(-50, -50, -50, 50, 50, 10), min_opacity=0.3, decimate=50)
    kept = filter_scene(scene, spec)
    step = drop_faint(crop_box(scene, [-50] * 3, [50, 50, 10]), 0.3)
    np.testing.assert_array_equal(kept.means.numpy(), decimate(step, 50).means.numpy())
    np.testing.assert_array_equal(filter_scene(scene, box=spec.box, min_opacity=0.3, decimate=50).means.numpy(),
                                  kept.means.numpy())
    with pytest.raises(SplatforgeError, match="only .* are left"):
        filter_scene(scene, box=spec.box, decimate=len(step) + 1 + (len(scene) - len(step)) // 2)


@pytest.mark.parametrize("ext", [".ply", ".spz", ".splat", ".compressed.ply"])
def test_cli_filter_writes_the_format_its_extension_names(tmp_path, scene, capsys, ext):
    src = tmp_path / "in.ply"
    write_ply(src, scene)
    out = tmp_path / f"out{ext}"
    assert main(["filter", str(src), str(out), "--sphere", "0", "0", "0", "40", "--decimate", "100"]) == 0
    kept = load_scene(out)
    expected = decimate(crop_sphere(scene, [0, 0, 0], 40), 100)
    assert len(kept) == 100
    np.testing.assert_allclose(np.sort(kept.means.numpy(), 0), np.sort(expected.means.numpy(), 0), atol=0.05)
    printed = capsys.readouterr().out
    assert "500 Gaussians" in printed and "100 Gaussians (20.0% kept)" in printed
    # the Python API mirrors the command line
    _, again = filter_file(src, tmp_path / f"api{ext}", sphere=(0, 0, 0, 40), decimate=100)
    assert _rows(again) == _rows(expected)


def test_cli_filter_size_options(tmp_path, scene):
    src = tmp_path / "in.ply"
    write_ply(src, scene)
    assert main(["filter", str(src), str(tmp_path / "a.ply"), "--max-size-percentile", "50"]) == 0
    assert main(["filter", str(src), str(tmp_path / "b.ply"), "--max-size", "0.5", "--min-opacity", "0.5"]) == 0
    assert _rows(load_scene(tmp_path / "a.ply")) == _rows(drop_large(scene, percentile=50))
    assert _rows(load_scene(tmp_path / "b.ply")) == _rows(drop_large(drop_faint(scene, 0.5), max_size=0.5))


BAD = [
    (["--box", "100", "100", "100", "200", "200", "200"], "crop box .* keeps none of the 500"),
    (["--sphere", "500", "0", "0", "1"], "crop sphere .* keeps none"),
    (["--min-opacity", "1.0"], "minimum opacity 1 keeps none"),
    (["--max-size", "1e-9"], "maximum size 1e-09 keeps none"),
    (["--box", "1", "0", "0", "0", "1", "1"], r"minimum exceeds its maximum \(x: 1 > 0\)"),
    (["--decimate", "0"], "cannot decimate to 0"),
    (["--decimate", "501"], "cannot decimate to 501 Gaussians: only 500"),
    (["--min-opacity", "0.9", "--decimate", "400"], "cannot decimate to 400 Gaussians: only"),
    (["--min-opacity", "1.5"], r"minimum opacity must be in \[0, 1\]"),
    (["--sphere", "0", "0", "0", "-1"], "radius must be a positive"),
    (["--max-size-percentile", "0"], r"percentile must be in \(0, 100\]"),
    (["--max-size", "1", "--max-size-percentile", "50"], "not both"),
    ([], "no filter given"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) or "none" for a, _ in BAD])
def test_cli_filter_bad_input_names_the_problem_and_writes_nothing(tmp_path, scene, capsys, args, message):
    src = tmp_path / "in.ply"
    write_ply(src, scene)
    out = tmp_path / "out.spz"
    assert main(["filter", str(src), str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("splatforge filter: error: ") and err.count("\n") == 1
    assert re.search(message, err), err
    if "keeps none" in message or "only" in message:
        assert str(src) in err  # what the file did not have
    assert sorted(os.listdir(tmp_path)) == ["in.ply"]  # no output, no temporary file


def test_existing_output_needs_overwrite_and_is_left_untouched_without_it(tmp_path, scene, capsys):
    src, out = tmp_path / "in.ply", tmp_path / "out.splat"
    write_ply(src, scene)
    save_scene(scene[:7], out)
    before = out.read_bytes()
    assert main(["filter", str(src), str(out), "--decimate", "10"]) == 2
    assert f"{out} already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main(["filter", str(src), str(out), "--decimate", "10", "--overwrite"]) == 0
    assert len(load_scene(out)) == 10
    # in place: the input is read before it is replaced
    size_in = src.stat().st_size
    capsys.readouterr()
    assert main(["filter", str(src), str(src), "--decimate", "20", "--overwrite"]) == 0
    assert f"{src}: 500 Gaussians, {size_in:,} bytes" in capsys.readouterr().out
    assert len(load_scene(src)) == 20
    assert sorted(os.listdir(tmp_path)) == ["in.ply", "out.splat"]


def test_unknown_output_format_and_missing_input_fail_before_writing(tmp_path, scene, capsys):
    src = tmp_path / "in.ply"
    write_ply(src, scene)
    assert main(["filter", str(src), str(tmp_path / "out.xyz"), "--decimate", "10"]) == 2
    assert "cannot tell the format" in capsys.readouterr().err
    assert main(["filter", str(tmp_path / "nope.ply"), str(tmp_path / "o.ply"), "--decimate", "10"]) == 2
    assert "nope.ply" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["in.ply"]


def test_cli_filter_options_are_the_library_spec():
    from splatforge.cli import parse_command_line

    _, opts = parse_command_line(["filter", "in.ply", "out.ply", "--box", "0", "0", "0", "1", "1", "1",
                               "--decimate", "5"])
    assert opts.spec == SceneFilter(box=(0.0, 0.0, 0.0, 1.0, 1.0, 1.0), decimate=5)
