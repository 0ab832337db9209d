"""Projection, covariance, SH and tile binning against gsplat 1.5.3's pure-PyTorch functions."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("gsplat")
from gsplat.cuda import _torch_impl as gs  # noqa: E402

from splatforge.core.sh import eval_sh  # noqa: E402
from splatforge.raster.project import covariances, project_gaussians  # noqa: E402
from splatforge.raster.tiles import isect_tiles  # noqa: E402

from .conftest import make_scene  # noqa: E402


def test_covariances_match_gsplat():
    scene = make_scene(n=500, dtype=torch.float64)
    want, _ = gs._quat_scale_to_covar_preci(scene["quats"], scene["scales"], compute_preci=False)
    torch.testing.assert_close(covariances(scene["quats"], scene["scales"]), want)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_matches_gsplat(degree):
    g = torch.Generator().manual_seed(degree)
    dirs = torch.randn(300, 3, generator=g, dtype=torch.float64)
    coeffs = torch.randn(300, 16, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(eval_sh(degree, dirs, coeffs), gs._spherical_harmonics(degree, dirs, coeffs))


@pytest.mark.parametrize("camera_model", ["pinhole", "ortho", "fisheye"])
@pytest.mark.parametrize("antialiased", [False, True])
def test_projection_matches_gsplat(camera_model, antialiased):
    scene = make_scene(n=400, cameras=3, width=64, height=48, dtype=torch.float64)
    # spread some Gaussians behind, beside and far off-screen to exercise clamping and culling
    scene["means"][:40, 2] = -1.0
    scene["means"][40:80, 0] = 30.0
    covars = covariances(scene["quats"], scene["scales"])
    want = gs._fully_fused_projection(
        scene["means"], covars, scene["viewmats"], scene["Ks"], 64, 48, eps2d=0.3,
        calc_compensations=antialiased, camera_model=camera_model,
    )
    got = project_gaussians(
        scene["means"], covars, scene["viewmats"], scene["Ks"], 64, 48, eps2d=0.3,
        calc_compensations=antialiased, camera_model=camera_model,
    )
    radii_w, means2d_w, depths_w, conics_w, comp_w = want
    assert torch.equal(got.radii, radii_w)
    valid = (radii_w > 0).all(dim=-1)
    assert 0 < int(valid.sum()) < valid.numel()
    torch.testing.assert_close(got.means2d[valid], means2d_w[valid])
    torch.testing.assert_close(got.depths, depths_w)
    torch.testing.assert_close(got.conics[valid], conics_w[valid])
    if antialiased:
        torch.testing.assert_close(got.compensations[valid], comp_w[valid])


def test_tile_binning_matches_gsplat():
    scene = make_scene(n=150, cameras=2, width=70, height=45)
    covars = covariances(scene["quats"], scene["scales"])
    proj = project_gaussians(scene["means"], covars, scene["viewmats"], scene["Ks"], 70, 45)
    tile_size, tw, th = 16, 5, 3
    tiles_w, isect_w, flatten_w = gs._isect_tiles(proj.means2d, proj.radii, proj.depths, tile_size, tw, th)
    offsets_w = gs._isect_offset_encode(isect_w, 2, tw, th)
    n = scene["means"].shape[0]
    image_ids = torch.arange(2).repeat_interleave(n)
    tiles, isect, flatten, offsets = isect_tiles(
        proj.means2d.reshape(-1, 2), proj.radii.reshape(-1, 2), proj.depths.reshape(-1), image_ids, 2,
        tile_size, tw, th,
    )
    assert torch.equal(tiles.reshape(2, n), tiles_w)
    assert torch.equal(isect, isect_w)
    assert torch.equal(flatten, flatten_w)
    assert torch.equal(offsets, offsets_w)
