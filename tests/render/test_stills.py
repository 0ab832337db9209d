"""render_views: one PNG per camera, what the reference rasterizer sees, on the chosen background."""

from __future__ import annotations

import numpy as np
import torch

from splatforge.core.cameras import intrinsics_from_fov, look_at
from splatforge.core.gaussians import Gaussians
from splatforge.core.images import load_image
from splatforge.raster import rasterization
from splatforge.render.stills import render_views

W, H = 64, 48


def _scene() -> Gaussians:
    gen = torch.Generator().manual_seed(0)
    g = Gaussians.from_points(torch.randn(300, 3, generator=gen) * 0.3, torch.rand(300, 3, generator=gen),
                              sh_degree=1, scale=0.05, opacity=0.7)
    g.shN = torch.randn(g.shN.shape, generator=gen) * 0.2
    g.quats = torch.randn(300, 4, generator=gen)
    return g


def _cameras(n=3):
    eyes = torch.tensor([[2.5 * np.cos(a), 2.5 * np.sin(a), 0.8] for a in np.linspace(0, 2, n)])
    return look_at(eyes, (0.0, 0.0, 0.0)), intrinsics_from_fov(W, H, fov_x_degrees=50.0)[None].expand(n, 3, 3)


def test_one_png_per_camera_matching_the_reference_rasterizer(tmp_path):
    g = _scene()
    viewmats, ks = _cameras()
    report = render_views(g, viewmats, ks, W, H, tmp_path / "stills", background=(0.2, 0.4, 0.6), backend="cpu")
    assert [p.name for p in report.paths] == ["view_000.png", "view_001.png", "view_002.png"]
    assert len(report.milliseconds) == 3 and all(ms > 0 for ms in report.milliseconds)
    for i, path in enumerate(report.paths):
        with torch.no_grad():
            ref, _, _ = rasterization(g.means, g.quats, g.activated_scales(), g.activated_opacities(), g.colors_sh(),
                                      viewmats[i:i + 1], ks[i:i + 1], W, H, sh_degree=1,
                                      backgrounds=torch.tensor([[0.2, 0.4, 0.6]]), backend="torch")
        image = load_image(path)
        assert image.shape == (H, W, 3)
        expected = np.round(ref[0].clamp(0, 1).numpy() * 255) / 255
        assert np.abs(image - expected).max() <= 1.5 / 255  # 8-bit rounding of two float renders


def test_a_gaussian_straight_ahead_lands_in_the_centre_on_the_background(tmp_path):
    red = Gaussians.from_points(torch.zeros(1, 3), torch.tensor([[1.0, 0.0, 0.0]]), sh_degree=0, scale=0.1,
                                opacity=0.99)
    viewmats, ks = _cameras(1)
    path = render_views(red, viewmats, ks, W, H, tmp_path, background=(0.0, 1.0, 0.0)).paths[0]
    image = load_image(path)
    np.testing.assert_allclose(image[H // 2, W // 2], [1.0, 0.0, 0.0], atol=0.06)  # half a pixel off its peak
    for corner in (image[0, 0], image[0, -1], image[-1, 0], image[-1, -1]):
        np.testing.assert_allclose(corner, [0.0, 1.0, 0.0], atol=1e-6)
