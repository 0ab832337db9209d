"""Degenerate scenes and images, and bad arguments."""

from __future__ import annotations

import pytest
import torch

import splatforge
from .conftest import make_scene
from .test_cpu_vs_reference import DIFF_ARGS, assert_grads_close, render_and_grads


def both_backends_agree(scene, **kwargs):
    ref = render_and_grads(scene, "torch", **kwargs)
    cpu = render_and_grads(scene, "cpu", **kwargs)
    torch.testing.assert_close(cpu[0], ref[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(cpu[1], ref[1], atol=1e-5, rtol=0)
    assert_grads_close(cpu[3], ref[3], DIFF_ARGS + ("means2d",))
    return cpu


@pytest.mark.parametrize("packed", [False, True])
def test_no_gaussians(packed):
    scene = make_scene(n=0, cameras=2)
    bg = torch.tensor([[0.1, 0.2, 0.3], [0.0, 1.0, 0.0]])
    for backend in ("cpu", "torch"):
        rgb, alpha, meta = splatforge.rasterization(**scene, backgrounds=bg, packed=packed, backend=backend)
        assert rgb.shape == (2, 30, 40, 3) and alpha.shape == (2, 30, 40, 1)
        assert torch.equal(rgb, bg[:, None, None, :].expand_as(rgb))
        assert float(alpha.abs().max()) == 0.0
        assert meta["isect_ids"].numel() == 0


def test_everything_behind_the_camera_or_off_screen():
    scene = make_scene(n=50)
    scene["means"][:25, 2] = -3.0  # behind
    scene["means"][25:, 0] = 50.0  # far to the right
    rgb, alpha, meta = both_backends_agree(scene)[:3]
    assert float(alpha.max()) == 0.0
    assert int((meta["radii"] > 0).sum()) == 0


@pytest.mark.parametrize("size", [(1, 1), (17, 3), (300, 2), (2, 70), (16, 16), (33, 31)])
def test_image_sizes(size):
    width, height = size
    scene = make_scene(n=40, width=width, height=height, seed=width * 7 + height)
    scene["scales"] = scene["scales"] * 4
    both_backends_agree(scene)


def test_gaussians_much_larger_than_the_image():
    scene = make_scene(n=5, width=24, height=20)
    scene["scales"] = torch.full((5, 3), 5.0)
    scene["means"][:, 2] = torch.tensor([8.0, 9.0, 10.0, 11.0, 12.0])
    cpu = both_backends_agree(scene)
    assert float(cpu[1].min()) > 0.05


def test_opacity_zero_and_one_and_zero_scales():
    scene = make_scene(n=60)
    scene["opacities"][:20] = 0.0
    scene["opacities"][20:40] = 1.0
    scene["scales"][40:50] = 0.0  # a point: only the eps2d blur remains
    scene["quats"][50:] = 0.0  # degenerate rotation
    both_backends_agree(scene, packed=False)


def test_three_cameras_at_once_equal_three_single_renders():
    scene = make_scene(n=80, cameras=3)
    together = splatforge.rasterization(**scene, backend="cpu")[0]
    for i in range(3):
        single = {**scene, "viewmats": scene["viewmats"][i:i + 1], "Ks": scene["Ks"][i:i + 1]}
        torch.testing.assert_close(splatforge.rasterization(**single, backend="cpu")[0][0], together[i],
                                   atol=1e-6, rtol=0)


def test_near_far_and_radius_clip_cull():
    scene = make_scene(n=100)
    full = splatforge.rasterization(**scene, backend="cpu", packed=False)[2]
    near = splatforge.rasterization(**scene, near_plane=3.0, backend="cpu", packed=False)[2]
    far = splatforge.rasterization(**scene, far_plane=3.0, backend="cpu", packed=False)[2]
    clip = splatforge.rasterization(**scene, radius_clip=4.0, backend="cpu", packed=False)[2]
    visible = lambda meta: (meta["radii"] > 0).all(-1)  # noqa: E731
    depth = full["depths"]
    assert torch.equal(visible(near), visible(full) & (depth > 3.0))
    assert torch.equal(visible(far), visible(full) & (depth < 3.0))
    assert torch.equal(visible(clip), visible(full) & (full["radii"] > 4).any(-1))


def test_meta_has_gsplat_keys_and_shapes():
    scene = make_scene(n=30, cameras=2)
    _, _, meta = splatforge.rasterization(**scene, packed=False, backend="cpu")
    for key in ("radii", "means2d", "depths", "conics", "opacities", "tile_width", "tile_height", "isect_ids",
                "flatten_ids", "isect_offsets", "width", "height", "tile_size", "n_cameras"):
        assert key in meta
    assert meta["radii"].shape == (2, 30, 2) and meta["radii"].dtype == torch.int32
    assert meta["means2d"].shape == (2, 30, 2) and meta["conics"].shape == (2, 30, 3)
    assert meta["isect_offsets"].shape == (2, 2, 3)
    _, _, packed = splatforge.rasterization(**scene, packed=True, backend="cpu")
    nnz = int((meta["radii"] > 0).all(-1).sum())
    assert packed["means2d"].shape == (nnz, 2) and packed["camera_ids"].shape == (nnz,)
    torch.testing.assert_close(packed["means2d"], meta["means2d"][(meta["radii"] > 0).all(-1)])


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(means=torch.zeros(60, 2)), "means"),
        (dict(quats=torch.zeros(60, 3)), "quats"),
        (dict(scales=torch.zeros(59, 3)), "scales"),
        (dict(opacities=torch.zeros(60, 1)), "opacities"),
        (dict(colors=torch.zeros(61, 3)), "colors"),
        (dict(viewmats=torch.eye(3)[None]), "viewmats"),
        (dict(Ks=torch.eye(3)), "Ks"),
        (dict(width=0), "width"),
        (dict(render_mode="RGBD"), "render_mode"),
        (dict(camera_model="ftheta"), "camera_model"),
        (dict(sparse_grad=True), "sparse_grad"),
        (dict(backend="cuda"), "backend"),
        (dict(backgrounds=torch.zeros(2, 3)), "backgrounds"),
        (dict(quats=torch.zeros(60, 4, dtype=torch.int64)), "quats"),
    ],
)
def test_bad_arguments_name_the_argument(change, message):
    scene = make_scene(n=60)
    with pytest.raises(ValueError, match=message):
        splatforge.rasterization(**{**scene, "backend": "cpu", **change})


def test_sh_degree_needs_enough_coefficients():
    scene = make_scene(n=10, sh_degree=1)
    with pytest.raises(ValueError, match="K >= 9"):
        splatforge.rasterization(**scene, sh_degree=2, backend="cpu")


@pytest.mark.parametrize("name", ["means", "scales", "opacities", "colors", "quats"])
def test_non_finite_parameters_raise(name):
    scene = make_scene(n=20)
    scene[name].reshape(-1)[3] = float("nan")
    with pytest.raises(ValueError, match=f"{name} holds 1 non-finite"):
        splatforge.rasterization(**scene, backend="cpu")


def test_float64_inputs_render_and_keep_their_dtype():
    scene = make_scene(n=40, dtype=torch.float64)
    rgb, alpha, _ = splatforge.rasterization(**scene, backend="cpu")
    ref = splatforge.rasterization(**scene, backend="torch")[0]
    assert rgb.dtype == torch.float64
    torch.testing.assert_close(rgb, ref, atol=1e-5, rtol=0)
