"""The fused Numba projection against the torch form (values and autograd gradients)."""

from __future__ import annotations

import pytest
import torch

from splatforge.raster.project import covariances, project_gaussians
from splatforge.raster.project_cpu import project_gaussians_fused

from .conftest import make_scene


@pytest.mark.parametrize("camera_model", ["pinhole", "ortho"])
@pytest.mark.parametrize("antialiased", [False, True])
@pytest.mark.parametrize("batch_dims", [(), (2,)])
def test_fused_projection_matches_torch(camera_model, antialiased, batch_dims):
    scene = make_scene(n=300, cameras=3, width=64, height=48, dtype=torch.float64, batch_dims=batch_dims)
    means = scene["means"]
    means[..., :30, 2] = -1.0  # behind the camera
    means[..., 30:60, 0] = 8.0  # beyond the clamped field of view (Jacobian clamping)
    means[..., 60:70, 1] = -9.0
    if camera_model == "ortho":
        scene["Ks"][..., 0, 0] = scene["Ks"][..., 1, 1] = 20.0
    leaves = [scene[k].clone().requires_grad_(True) for k in ("means", "quats", "scales")]
    opac = scene["opacities"]
    args = dict(width=64, height=48, eps2d=0.3, calc_compensations=antialiased, camera_model=camera_model)
    ref = project_gaussians(leaves[0], covariances(leaves[1], leaves[2]), scene["viewmats"], scene["Ks"],
                            opacities=opac, **args)
    leaves_f = [t.detach().clone().requires_grad_(True) for t in leaves]
    got = project_gaussians_fused(*leaves_f, opac, scene["viewmats"], scene["Ks"], **args)

    assert torch.equal(got.radii, ref.radii)
    visible = (ref.radii > 0).all(-1)
    assert 0 < int(visible.sum()) < visible.numel()
    torch.testing.assert_close(got.means2d[visible], ref.means2d[visible])
    torch.testing.assert_close(got.conics[visible], ref.conics[visible])
    torch.testing.assert_close(got.depths, ref.depths)
    if antialiased:
        torch.testing.assert_close(got.compensations[visible], ref.compensations[visible])

    g = torch.Generator().manual_seed(0)
    def loss(p):
        total = (p.depths * torch.randn(p.depths.shape, generator=g, dtype=torch.float64)).sum()
        for t in (p.means2d, p.conics) + ((p.compensations,) if antialiased else ()):
            w = torch.randn(t.shape, generator=g, dtype=torch.float64)
            mask = visible.reshape(visible.shape + (1,) * (t.dim() - visible.dim()))
            total = total + (t * w * mask).sum()  # the rasterizer only ever reads visible entries
        return total
    want = torch.autograd.grad(loss(ref), leaves)
    g.manual_seed(0)
    have = torch.autograd.grad(loss(got), leaves_f)
    for name, a, b in zip(("means", "quats", "scales"), have, want):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9 * float(b.abs().max()), msg=name)
