"""The Numba backend against the dense torch reference: forward within 1e-5, gradients within 1e-3."""

from __future__ import annotations

import pytest
import torch

import splatforge
from .conftest import make_scene

DIFF_ARGS = ("means", "quats", "scales", "opacities", "colors")


def render_and_grads(scene, backend, wrt=DIFF_ARGS, **kwargs):
    """Render, then backprop a fixed random weighting of colours and alphas."""
    inputs = {k: (v.clone().requires_grad_(True) if k in wrt else v) for k, v in scene.items()}
    extra = {k: v.clone().requires_grad_(True) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    rgb, alpha, meta = splatforge.rasterization(**inputs, **extra, backend=backend)
    meta["means2d"].retain_grad()
    gen = torch.Generator().manual_seed(123)
    loss = (rgb * torch.randn(rgb.shape, generator=gen, dtype=rgb.dtype)).sum()
    loss = loss + (alpha * torch.randn(alpha.shape, generator=gen, dtype=alpha.dtype)).sum()
    leaves = [inputs[k] for k in wrt] + [v for v in extra.values() if isinstance(v, torch.Tensor)]
    grads = torch.autograd.grad(loss, leaves + [meta["means2d"]], allow_unused=True)
    return rgb.detach(), alpha.detach(), meta, grads


def assert_grads_close(got, want, names, rel=1e-3, floor=1e-5):
    """Max error within `rel` of the largest reference gradient; `floor` absorbs float32 noise on
    gradients that are zero in exact arithmetic (e.g. rotations of isotropic Gaussians)."""
    for g, w, name in zip(got, want, names):
        if w is None:
            assert g is None or float(g.abs().max()) == 0.0, name
            continue
        assert g.shape == w.shape, name
        if w.numel() == 0:
            continue
        scale = float(w.abs().max()) + 1e-12
        err = float((g - w).abs().max())
        assert err <= rel * scale + floor, f"{name}: max error {err:.3g} vs max magnitude {scale:.3g}"


CASES = {
    "rgb": dict(),
    "three_cameras": dict(cameras=3),
    "sh0": dict(sh_degree=0),
    "sh1": dict(sh_degree=1),
    "sh3_two_cams": dict(sh_degree=3, cameras=2),
    "features8": dict(channels=8),
    "batch_dims": dict(batch_dims=(2,), cameras=2),
    "odd_size": dict(width=37, height=19),
    "dense": dict(n=150, width=33, height=33),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("packed", [False, True])
def test_forward_and_gradients_match(case, packed):
    opts = CASES[case]
    sh_degree = opts.get("sh_degree")
    scene = make_scene(**opts)
    ref = render_and_grads(scene, "torch", sh_degree=sh_degree, packed=packed)
    cpu = render_and_grads(scene, "cpu", sh_degree=sh_degree, packed=packed)
    torch.testing.assert_close(cpu[0], ref[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(cpu[1], ref[1], atol=1e-5, rtol=0)
    assert float(ref[1].max()) > 0.5, "the scene should cover part of the image"
    assert_grads_close(cpu[3], ref[3], DIFF_ARGS + ("means2d",))


@pytest.mark.parametrize("render_mode", ["D", "ED", "RGB+D", "RGB+ED"])
def test_depth_modes_match(render_mode):
    scene = make_scene(cameras=2)
    ref = render_and_grads(scene, "torch", render_mode=render_mode, packed=False)
    cpu = render_and_grads(scene, "cpu", render_mode=render_mode, packed=False)
    assert cpu[0].shape[-1] == (1 if render_mode in ("D", "ED") else 4)
    torch.testing.assert_close(cpu[0], ref[0], atol=1e-4, rtol=1e-5)
    assert_grads_close(cpu[3], ref[3], DIFF_ARGS + ("means2d",))


def test_expected_depth_is_depth_of_a_single_opaque_layer():
    scene = make_scene(n=1, width=16, height=16)
    scene["means"] = torch.tensor([[0.0, 0.0, 2.5]])
    scene["scales"] = torch.full((1, 3), 0.5)
    rgb, alpha, _ = splatforge.rasterization(**scene, render_mode="ED", backend="cpu")
    center = rgb[0, 8, 8, 0]
    assert abs(float(center) - 2.5) < 1e-4


@pytest.mark.parametrize("mode", ["classic", "antialiased"])
def test_backgrounds_and_antialiasing(mode):
    scene = make_scene(cameras=2)
    bg = torch.tensor([[0.2, 0.5, 0.9], [1.0, 0.0, 0.3]])
    ref = render_and_grads(scene, "torch", backgrounds=bg, rasterize_mode=mode)
    cpu = render_and_grads(scene, "cpu", backgrounds=bg, rasterize_mode=mode)
    torch.testing.assert_close(cpu[0], ref[0], atol=1e-5, rtol=0)
    assert_grads_close(cpu[3], ref[3], DIFF_ARGS + ("backgrounds", "means2d"))


@pytest.mark.parametrize("camera_model", ["ortho", "fisheye"])
def test_other_camera_models(camera_model):
    scene = make_scene()
    if camera_model == "ortho":
        scene["Ks"] = torch.tensor([[[25.0, 0, 20], [0, 25.0, 15], [0, 0, 1]]])
    ref = render_and_grads(scene, "torch", camera_model=camera_model)
    cpu = render_and_grads(scene, "cpu", camera_model=camera_model)
    assert float(ref[1].max()) > 0.5
    torch.testing.assert_close(cpu[0], ref[0], atol=1e-5, rtol=0)
    assert_grads_close(cpu[3], ref[3], DIFF_ARGS + ("means2d",))


def test_covars_in_place_of_quats_and_scales():
    scene = make_scene()
    from splatforge.raster.project import covariances

    covars = covariances(scene["quats"], scene["scales"])
    with_qs = splatforge.rasterization(**scene, backend="cpu")[0]
    args = {k: v for k, v in scene.items() if k not in ("quats", "scales")}
    full = render_and_grads({**args, "quats": None, "scales": None}, "cpu", wrt=("means", "opacities", "colors"),
                            covars=covars)
    ref = render_and_grads({**args, "quats": None, "scales": None}, "torch", wrt=("means", "opacities", "colors"),
                           covars=covars)
    torch.testing.assert_close(full[0], with_qs, atol=1e-5, rtol=0)
    assert_grads_close(full[3], ref[3], ("means", "opacities", "colors", "covars", "means2d"))
    triu = covars.reshape(-1, 9)[:, [0, 1, 2, 4, 5, 8]]
    rgb6 = splatforge.rasterization(**{**args, "quats": None, "scales": None}, covars=triu, backend="cpu")[0]
    torch.testing.assert_close(rgb6, with_qs, atol=1e-6, rtol=0)


def test_per_camera_colors():
    scene = make_scene(cameras=2)
    scene["colors"] = torch.rand(2, scene["means"].shape[0], 3, generator=torch.Generator().manual_seed(5))
    ref = render_and_grads(scene, "torch", packed=False)
    cpu = render_and_grads(scene, "cpu", packed=False)
    torch.testing.assert_close(cpu[0], ref[0], atol=1e-5, rtol=0)
    assert_grads_close(cpu[3], ref[3], DIFF_ARGS + ("means2d",))


def test_absgrad_is_sum_of_per_pixel_absolute_gradients():
    scene = make_scene(n=12, width=10, height=8, seed=3)
    inputs = dict(scene, means=scene["means"].requires_grad_(True))
    rgb, alpha, meta = splatforge.rasterization(**inputs, packed=False, absgrad=True, backend="cpu")
    weights = torch.randn(rgb.shape, generator=torch.Generator().manual_seed(9))
    (rgb * weights).sum().backward()
    got = meta["means2d"].absgrad
    # reference: backprop each pixel on its own through the dense renderer and sum |grad|
    rgb_r, _, meta_r = splatforge.rasterization(**inputs, packed=False, backend="torch")
    want = torch.zeros_like(got)
    for y in range(rgb_r.shape[1]):
        for x in range(rgb_r.shape[2]):
            (g,) = torch.autograd.grad((rgb_r[0, y, x] * weights[0, y, x]).sum(), meta_r["means2d"], retain_graph=True)
            want += g.abs()
    torch.testing.assert_close(got, want, atol=1e-4 * float(want.abs().max()), rtol=0)
    assert float(got.abs().max()) > 0


def test_results_are_identical_from_run_to_run():
    scene = make_scene(n=300, cameras=2, width=64, height=48, seed=7)
    runs = [render_and_grads(scene, "cpu") for _ in range(2)]
    assert torch.equal(runs[0][0], runs[1][0])
    for a, b in zip(runs[0][3], runs[1][3]):
        assert torch.equal(a, b)
