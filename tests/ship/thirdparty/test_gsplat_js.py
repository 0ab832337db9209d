"""gsplat.js (npm `gsplat`, its own PLY and .splat loaders and WebGL renderer, in headless
Chromium) opens splatforge's files and draws what they hold where it belongs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from splatforge.core.gaussians import Gaussians
from splatforge.io.ply import write_ply

from .scenes import MARKERS, View, marker_scene, view_scene

VIEW = View()


def save_for_gsplat_js(g: Gaussians, path: Path) -> None:
    if path.suffix == ".ply":
        write_ply(path, g)
    else:
        from splatforge.io.scene import save_scene

        save_scene(g, path)


@pytest.mark.parametrize("kind", ["ply", "splat"])
def test_gsplat_js_draws_each_marker_where_the_scene_puts_it(gsplat_js, kind):
    g = marker_scene(sh_degree=3 if kind == "ply" else 0)
    path = gsplat_js.data_dir / f"markers.{kind}"
    save_for_gsplat_js(g, path)
    image = gsplat_js.render(path, kind, VIEW.for_gsplat_js())
    assert gsplat_js.last_count == len(g)

    for name, marker in MARKERS.items():
        col, row = VIEW.project(marker["xyz"])
        rgb, alpha = image[row, col, :3], image[row, col, 3]
        want = np.array(marker["rgb"])
        assert alpha > 0.9, f"{name} marker: alpha {alpha:.2f} at pixel ({col}, {row})"
        assert np.abs(rgb - want).max() < 0.12, f"{name} marker: colour {rgb.round(2)} at ({col}, {row})"

    # The needle stands vertical: yellow above and below the centre, nothing beside it.
    col, row = VIEW.project(MARKERS["yellow"]["xyz"])
    for dr in (-8, 8):
        r, gr, b, a = image[row + dr, col]
        assert r > 0.3 and gr > 0.3 and b < 0.05 and a > 0.4, (
            f"needle: expected yellow at ({col}, {row + dr}), got {image[row + dr, col].round(2)}")
    for dc in (-8, 8):
        assert image[row, col + dc, 3] < 0.05, (
            f"needle: expected background at ({col + dc}, {row}), got {image[row, col + dc].round(2)}; "
            "is the rotation read in the wrong component order?")

    # Background: corners, and the gaps between the markers.
    h, w = image.shape[:2]
    for col, row in [(2, 2), (w - 3, 2), (2, h - 3), (w - 3, h - 3), (30, 30), (w - 30, h - 30)]:
        assert image[row, col, 3] < 0.01, f"expected background at ({col}, {row}), got {image[row, col].round(2)}"


@pytest.mark.parametrize("kind", ["ply", "splat"])
def test_gsplat_js_picture_matches_our_rasterizer(gsplat_js, kind):
    """Every pixel, against splatforge's own rasterizer from the same camera: any misread field
    (scale, rotation, opacity, colour) of any of the 1000 Gaussians shows up here."""
    g = view_scene()
    path = gsplat_js.data_dir / f"view.{kind}"
    save_for_gsplat_js(g, path)
    theirs = gsplat_js.render(path, kind, VIEW.for_gsplat_js())
    ours = VIEW.render_ours(g)
    assert ours[..., 3].mean() > 0.2, "the scene should cover much of the picture"
    diff = np.abs(theirs - ours)
    mean, p99 = diff.mean(), np.percentile(diff, 99)
    assert mean < 0.01 and p99 < 0.08, (
        f"gsplat.js's picture of our {kind} differs from ours: mean abs {mean:.4f}, 99th pct {p99:.4f}")
