"""A short training run on a tiny synthetic capture raises test PSNR well above its start, and the
exported PLY lands in the capture's own frame."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

pycolmap = pytest.importorskip("pycolmap")

import splatforge  # noqa: E402
from splatforge.core.cameras import orbit_path  # noqa: E402
from splatforge.io.ply import read_ply  # noqa: E402
from splatforge.capture import load_capture  # noqa: E402
from splatforge.train.trainer import evaluate, export_ply, train_scene  # noqa: E402

W, H = 48, 36


def tiny_capture(tmp_path, n_views=10, seed=0):
    """A cluster of coloured Gaussians seen from an orbit, written as a COLMAP capture whose world
    frame is shifted and scaled (so normalization has work to do)."""
    g = torch.Generator().manual_seed(seed)
    n = 300
    means = torch.randn(n, 3, generator=g) * 0.35
    colors = torch.rand(n, 3, generator=g)
    viewmats = orbit_path((0.0, 0.0, 0.0), 2.5, n_views, elevation_degrees=25.0)
    k = torch.tensor([[40.0, 0, W / 2], [0, 40.0, H / 2], [0, 0, 1]])
    with torch.no_grad():
        rgb, _, _ = splatforge.rasterization(
            means, torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1), torch.full((n, 3), 0.08), torch.full((n,), 0.9),
            colors, viewmats, k[None].repeat(n_views, 1, 1), W, H)
    shift, scale = torch.tensor([5.0, -2.0, 1.0]), 3.0  # capture world = scale * ours + shift
    root = tmp_path / "capture"
    (root / "images").mkdir(parents=True)
    rec = pycolmap.Reconstruction()
    cam = pycolmap.Camera.create_from_model_name(1, "PINHOLE", 40.0, W, H)
    cam.params = np.array([40.0, 40.0, W / 2, H / 2])
    rec.add_camera_with_trivial_rig(cam)
    for i in range(n_views):
        name = f"view_{i:02d}.png"
        Image.fromarray((rgb[i].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)).save(root / "images" / name)
        vm = viewmats[i].double().numpy()
        rot, trans = vm[:3, :3], vm[:3, 3]
        # world-to-camera of the scaled, shifted capture frame
        trans_c = scale * trans - rot @ shift.double().numpy()
        rec.add_image_with_trivial_frame(pycolmap.Image(name=name, camera_id=1, image_id=i + 1))
        rec.frame(i + 1).rig_from_world = pycolmap.Rigid3d(pycolmap.Rotation3d(rot), trans_c)
        rec.register_frame(i + 1)
    for p, c in zip(means.double().numpy() * scale + shift.double().numpy(), (colors.numpy() * 255).astype(np.uint8)):
        rec.add_point3D(p, pycolmap.Track(), c)
    sparse = root / "sparse" / "0"
    sparse.mkdir(parents=True)
    rec.write_binary(str(sparse))
    return root, means, shift, scale


def test_short_training_raises_test_psnr_and_exports_in_the_capture_frame(tmp_path):
    root, means, shift, scale = tiny_capture(tmp_path)
    capture = load_capture(root, test_every=5)
    assert len(capture.test) == 2
    result = train_scene(capture, max_steps=150, sh_degree=1, sh_degree_interval=100, init_opacity=0.5)
    before = train_scene(capture, max_steps=0, sh_degree=1, init_opacity=0.5).metrics["test"]["psnr"]
    after = result.metrics["test"]["psnr"]
    assert after > before + 4.0, (before, after)
    assert all(math.isfinite(r["loss"]) for r in result.history)
    path = export_ply(result, capture, tmp_path / "scene.ply")
    scene = read_ply(path)
    # the exported means sit where the capture's own SfM points are (its frame, not the normalized one)
    sfm_center = torch.from_numpy(capture.points_capture_frame()).float().mean(0)
    assert torch.allclose(scene.means.mean(0), sfm_center, atol=0.3 * scale)


def test_strategies_run_inside_training(tmp_path):
    root, *_ = tiny_capture(tmp_path, n_views=6)
    capture = load_capture(root, test_every=0)
    from splatforge.train.trainer import TrainConfig

    for strategy in ("default", "mcmc"):
        result = train_scene(capture, TrainConfig(max_steps=30, sh_degree=0, strategy=strategy))
        assert result.metrics["count"] > 0 and result.metrics["test"] == {}
    assert evaluate({}, [], TrainConfig(), 0) == {}
