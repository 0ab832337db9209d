"""`rasterize_to_pixels` used directly on 2D Gaussians (as fit2d does), both blend modes."""

from __future__ import annotations

import math

import numba
import numpy as np

import pytest
import torch

from splatforge.raster import isect_tiles, rasterize_to_pixels
from splatforge.raster.reference import composite_reference

from .test_cpu_vs_reference import assert_grads_close


def random_2d(n, width, height, seed):
    g = torch.Generator().manual_seed(seed)
    means2d = torch.rand(n, 2, generator=g) * torch.tensor([width, height]) * 1.2 - 0.1 * torch.tensor([width, height])
    sx, sy = torch.rand(n, 2, generator=g).unbind(-1)
    sx, sy = 0.5 + 4 * sx, 0.5 + 4 * sy
    theta = torch.rand(n, generator=g) * math.pi
    cos, sin = torch.cos(theta), torch.sin(theta)
    a = cos * cos * sx * sx + sin * sin * sy * sy
    b = cos * sin * (sx * sx - sy * sy)
    c = sin * sin * sx * sx + cos * cos * sy * sy
    det = a * c - b * b
    conics = torch.stack([c / det, -b / det, a / det], dim=-1)
    radii = torch.stack([torch.ceil(3.33 * a.sqrt()), torch.ceil(3.33 * c.sqrt())], dim=-1).int()
    colors = torch.rand(n, 3, generator=g)
    opacities = torch.rand(n, generator=g) * 0.95 + 0.05
    depths = torch.rand(n, generator=g)
    return means2d, conics, colors, opacities, depths, radii


@pytest.mark.parametrize("blend", ["alpha", "sum"])
@pytest.mark.parametrize("size", [(40, 30), (17, 33), (75, 41)])
@pytest.mark.parametrize("tile", [16, 32, 8])  # one, two and a partial lane chunk per tile row
@pytest.mark.parametrize("channels", [3, 5])  # the RGB lane kernels, and the kernels for any count
def test_direct_2d_compositing_matches_reference(blend, size, tile, channels):
    width, height = size
    means2d, conics, colors, opacities, depths, radii = random_2d(80, width, height, seed=width)
    colors = colors[:, [k % 3 for k in range(channels)]] * torch.linspace(1.0, 0.5, channels)
    _, _, flatten_ids, offsets = isect_tiles(means2d, radii, depths, torch.zeros(80, dtype=torch.long), 1, tile,
                                             math.ceil(width / tile), math.ceil(height / tile))
    leaves = [t.clone().requires_grad_(True) for t in (means2d, conics, colors, opacities)]
    gen = torch.Generator().manual_seed(3)
    weights = torch.randn(1, height, width, channels, generator=gen), torch.randn(1, height, width, 1, generator=gen)

    def run(fn):
        rgb, alpha = fn(*leaves)
        loss = (rgb * weights[0]).sum() + (alpha * weights[1]).sum()
        return rgb.detach(), alpha.detach(), torch.autograd.grad(loss, leaves)

    cpu = run(lambda m, q, c, o: rasterize_to_pixels(m[None], q[None], c[None], o[None], width, height, tile, offsets,
                                                     flatten_ids, blend=blend))
    visible = torch.ones(1, 80, dtype=torch.bool)
    ref = run(lambda m, q, c, o: composite_reference(m[None], q[None], c[None], o[None], depths[None], visible, width,
                                                     height, blend=blend))
    torch.testing.assert_close(cpu[0], ref[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cpu[1], ref[1], atol=1e-5, rtol=1e-5)
    assert_grads_close(cpu[2], ref[2], ("means2d", "conics", "colors", "opacities"))


def test_sum_blend_refuses_backgrounds():
    means2d, conics, colors, opacities, depths, radii = random_2d(5, 16, 16, seed=0)
    _, _, fids, offsets = isect_tiles(means2d, radii, depths, torch.zeros(5, dtype=torch.long), 1, 16, 1, 1)
    with pytest.raises(ValueError, match="backgrounds"):
        rasterize_to_pixels(means2d[None], conics[None], colors[None], opacities[None], 16, 16, 16, offsets, fids,
                            backgrounds=torch.zeros(1, 3), blend="sum")


def test_exp_neg_is_within_1_5_ulp_of_exp():
    """The summed blend's inlined exp(-s), over the range the kernels use and past it."""
    from splatforge.raster.kernels_cpu import exp_neg

    @numba.njit
    def apply(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = exp_neg(x[i])
        return out

    s = np.concatenate([np.random.default_rng(0).uniform(0, 90, 200_000), np.linspace(0, 7, 20_001),
                        [0.0, 1e-30, 0.34657359, 87.0]]).astype(np.float32)
    got = apply(s).astype(np.float64)
    want = np.exp(-np.minimum(s.astype(np.float64), 87.0))
    ulp = np.abs(got - want) / np.spacing(want.astype(np.float32)).astype(np.float64)
    assert ulp.max() <= 1.5, f"{ulp.max():.2f} ulp at s = {s[ulp.argmax()]}"
    assert got[s == 0].min() == 1.0


def test_isect_tiles_sorts_each_tile_by_depth_keeping_ties_in_order():
    """Against a plain stable sort of (tile, depth): ties, negative depths and -0.0 included."""
    g = torch.Generator().manual_seed(4)
    n = 300
    means2d = torch.rand(n, 2, generator=g) * 64
    radii = torch.randint(1, 12, (n, 2), generator=g, dtype=torch.int32)
    depths = (torch.randint(-4, 5, (n,), generator=g) * 0.5).float()
    depths[::7] = -0.0
    depths[1::11] = 1e-30
    image_ids = torch.randint(0, 2, (n,), generator=g)
    order = torch.argsort(image_ids, stable=True)  # the entries of one image together, as the API passes them
    means2d, radii, depths, image_ids = means2d[order], radii[order], depths[order], image_ids[order]
    _, isect_ids, flatten_ids, offsets = isect_tiles(means2d, radii, depths, image_ids, 2, 16, 4, 4)
    # reference: every (entry, tile) pair, sorted by (image, tile, depth, entry)
    pairs = []
    for i in range(n):
        x, y = float(means2d[i, 0]) / 16, float(means2d[i, 1]) / 16
        rx, ry = float(radii[i, 0]) / 16, float(radii[i, 1]) / 16
        for ty in range(max(0, math.floor(y - ry)), min(4, math.ceil(y + ry))):
            for tx in range(max(0, math.floor(x - rx)), min(4, math.ceil(x + rx))):
                pairs.append((int(image_ids[i]), ty * 4 + tx, float(depths[i]), i))
    pairs.sort(key=lambda p: (p[0], p[1], p[2], p[3]))  # -0.0 == 0.0: ties keep entry order
    assert flatten_ids.tolist() == [p[3] for p in pairs]
    assert (isect_ids >> 32).tolist() == [(p[0] << (16).bit_length() | p[1]) for p in pairs]  # gsplat: tile bits
    assert offsets.reshape(-1)[1:].tolist() == sorted(offsets.reshape(-1)[1:].tolist())
