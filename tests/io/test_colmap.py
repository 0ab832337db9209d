"""COLMAP models made by pycolmap (binary and text, with and without rigs/frames) read back exactly."""

from __future__ import annotations

import numpy as np
import pytest

pycolmap = pytest.importorskip("pycolmap")

from splatforge.errors import FormatError, SplatforgeError  # noqa: E402
from splatforge.io.colmap import distort_points, read_colmap_model, undistort_image  # noqa: E402

CAMERAS = [
    ("SIMPLE_PINHOLE", [60.0, 32.0, 24.0]),
    ("PINHOLE", [60.0, 62.0, 31.0, 25.0]),
    ("SIMPLE_RADIAL", [60.0, 32.0, 24.0, 0.05]),
    ("RADIAL", [60.0, 32.0, 24.0, 0.05, -0.01]),
    ("OPENCV", [60.0, 62.0, 31.0, 25.0, 0.05, -0.01, 0.001, -0.002]),
]


def random_rotation(rng):
    q = rng.normal(size=4)
    return q / np.linalg.norm(q)  # (x, y, z, w) for pycolmap's Rotation3d


def build_model(tmp_path, fmt="bin", cameras=CAMERAS, n_points=50, seed=0, classic=False):
    rng = np.random.default_rng(seed)
    rec = pycolmap.Reconstruction()
    poses = {}
    for i, (model, params) in enumerate(cameras, start=1):
        cam = pycolmap.Camera.create_from_model_name(i, model, 60.0, 64, 48)
        cam.params = np.asarray(params, dtype=np.float64)
        rec.add_camera_with_trivial_rig(cam)
        image = pycolmap.Image(name=f"img_{i:02d}.png", camera_id=i, image_id=i)
        rec.add_image_with_trivial_frame(image)
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(random_rotation(rng)), rng.normal(size=3))
        rec.frame(i).rig_from_world = pose
        rec.register_frame(i)
        poses[f"img_{i:02d}.png"] = np.asarray(rec.image(i).cam_from_world().matrix())
    points = rng.normal(size=(n_points, 3))
    colors = rng.integers(0, 256, size=(n_points, 3), dtype=np.uint8)
    for p, c in zip(points, colors):
        rec.add_point3D(p, pycolmap.Track(), c)
    out = tmp_path / "capture" / "sparse" / "0"
    out.mkdir(parents=True)
    (rec.write_binary if fmt == "bin" else rec.write_text)(str(out))
    if classic:  # the three-file layout of COLMAP before rigs and frames (most public captures)
        for name in ("rigs", "frames"):
            (out / f"{name}.{fmt}").unlink()
    return tmp_path / "capture", poses, points, colors


@pytest.mark.parametrize("fmt", ["bin", "txt"])
@pytest.mark.parametrize("classic", [False, True])
def test_models_read_back_exactly(tmp_path, fmt, classic):
    root, poses, points, colors = build_model(tmp_path, fmt, classic=classic)
    model = read_colmap_model(root)
    assert [im.name for im in model.images] == sorted(poses)
    for im in model.images:
        np.testing.assert_allclose(im.viewmat[:3], poses[im.name], atol=1e-9 if fmt == "bin" else 1e-6)
        np.testing.assert_allclose(im.viewmat[3], [0, 0, 0, 1])
    order = np.lexsort(points.T)
    got_order = np.lexsort(model.points.T)
    np.testing.assert_allclose(model.points[got_order], points[order], atol=1e-9 if fmt == "bin" else 1e-6)
    assert np.array_equal(model.colors[got_order], colors[order])
    # (fx, fy, cx, cy) each model's parameters stand for
    expected_k = {"SIMPLE_PINHOLE": (60, 60, 32, 24), "PINHOLE": (60, 62, 31, 25), "SIMPLE_RADIAL": (60, 60, 32, 24),
                  "RADIAL": (60, 60, 32, 24), "OPENCV": (60, 62, 31, 25)}
    for (name, _), cam in zip(CAMERAS, (model.cameras[i] for i in sorted(model.cameras))):
        assert cam.model == name and (cam.width, cam.height) == (64, 48)
        fx, fy, cx, cy = expected_k[name]
        np.testing.assert_allclose(cam.K, [[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
    assert not model.cameras[1].is_distorted and model.cameras[5].is_distorted
    np.testing.assert_allclose(model.cameras[5].dist, [0.05, -0.01, 0.001, -0.002])
    np.testing.assert_allclose(model.cameras[4].dist, [0.05, -0.01, 0, 0])


def test_missing_model_and_unsupported_camera(tmp_path):
    with pytest.raises(SplatforgeError, match="no COLMAP model"):
        read_colmap_model(tmp_path)
    root, *_ = build_model(tmp_path, cameras=[("FULL_OPENCV", [60, 60, 32, 24] + [0.0] * 8)])
    with pytest.raises(SplatforgeError, match="camera 1 uses the FULL_OPENCV model"):
        read_colmap_model(root)


def test_truncated_model_is_a_format_error(tmp_path):
    root, *_ = build_model(tmp_path)
    images = root / "sparse" / "0" / "images.bin"
    images.write_bytes(images.read_bytes()[:20])
    with pytest.raises(FormatError, match="sparse/0"):
        read_colmap_model(root)


def test_undistortion_samples_the_photo_where_the_lens_put_each_pixel():
    from splatforge.io.colmap import ColmapCamera

    k = np.array([[60.0, 0, 31.0], [0, 62.0, 25.0], [0, 0, 1]])
    cam = ColmapCamera(1, "OPENCV", 64, 48, k, np.array([0.05, -0.01, 0.001, -0.002]))
    ys, xs = np.meshgrid(np.arange(48) + 0.5, np.arange(64) + 0.5, indexing="ij")
    # a photo whose value is the (distorted) pixel position itself: linear, so bilinear sampling is exact
    photo = np.stack([xs, ys], axis=-1).astype(np.float64)
    out = undistort_image(photo, cam)
    normalized = np.stack([(xs - 31.0) / 60.0, (ys - 25.0) / 62.0], axis=-1)
    src = distort_points(normalized, cam.dist)
    expected = np.stack([src[..., 0] * 60.0 + 31.0, src[..., 1] * 62.0 + 25.0], axis=-1)
    inside = (expected[..., 0] > 0.5) & (expected[..., 0] < 63.5) & (expected[..., 1] > 0.5) & (expected[..., 1] < 47.5)
    assert inside.mean() > 0.9
    np.testing.assert_allclose(out[inside], expected[inside], atol=1e-9)
    pinhole = ColmapCamera(1, "PINHOLE", 64, 48, k, np.zeros(4))
    assert undistort_image(photo, pinhole) is photo
