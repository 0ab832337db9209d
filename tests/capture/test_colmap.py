"""load_capture on COLMAP captures: photos, splits, downscaling, undistortion and the normalization's invariants."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pycolmap")

from splatforge.errors import SplatforgeError  # noqa: E402
from splatforge.capture import load_capture  # noqa: E402
from splatforge.io.colmap import read_colmap_model  # noqa: E402

from ..io.test_colmap import build_model  # noqa: E402

CAMS = [("PINHOLE", [60.0, 62.0, 31.0, 25.0])] * 9 + [("OPENCV", [60.0, 62.0, 31.0, 25.0, 0.05, -0.01, 0.0, 0.0])]


def write_photos(root, names, size=(64, 48), seed=0):
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(exist_ok=True)
    for name in names:
        Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)).save(root / "images" / name)


def capture(tmp_path, cams=CAMS):
    root, poses, points, colors = build_model(tmp_path, cameras=cams, n_points=40)
    write_photos(root, poses)
    return root, poses, points


def project(k, viewmat, points):
    cam = points @ viewmat[:3, :3].T + viewmat[:3, 3]
    uv = cam @ k.T
    return uv[:, :2] / uv[:, 2:3], cam[:, 2]


def test_split_every_8th_and_normalization_keeps_every_pixel(tmp_path):
    root, poses, points = capture(tmp_path)
    cap = load_capture(root)
    names = sorted(poses)
    assert [v.name for v in cap.test] == [names[0], names[8]]
    assert len(cap.train) == 8
    centers = np.stack([np.linalg.inv(v.viewmat)[:3, 3] for v in cap.train + cap.test])
    assert np.allclose(centers.mean(0), 0, atol=1e-9) and np.isclose(np.linalg.norm(centers, axis=1).max(), 1)
    model = read_colmap_model(root)
    model_points = model.points
    for view in cap.train:
        rot = view.viewmat[:3, :3]
        np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-9)  # still rigid
        original = next(im for im in model.images if im.name == view.name)
        k = model.cameras[original.camera_id].K
        uv_world, z_world = project(k, original.viewmat, model_points)
        uv_norm, z_norm = project(view.K, view.viewmat, cap.points)
        np.testing.assert_allclose(uv_norm, uv_world, atol=1e-7)
        assert np.array_equal(z_norm > 0, z_world > 0)
    np.testing.assert_allclose(cap.points_capture_frame(), model_points, atol=1e-9)
    np.testing.assert_allclose(cap.model_viewmats(), [im.viewmat for im in model.images], atol=1e-12)


def test_test_list_and_downscale_with_cache(tmp_path):
    root, poses, _ = capture(tmp_path)
    names = sorted(poses)
    cap = load_capture(root, downscale=2, test_list=[names[3]])
    assert [v.name for v in cap.test] == [names[3]]
    view = cap.train[0]
    assert view.image.shape == (24, 32, 3)
    np.testing.assert_allclose(view.K[0], [30.0, 0, 15.5])
    assert (root / "images_2_cache" / (names[0] + ".png")).is_file()
    again = load_capture(root, downscale=2, test_list=[names[3]])
    np.testing.assert_array_equal(again.train[0].image, view.image)
    with pytest.raises(SplatforgeError, match="does not have"):
        load_capture(root, test_list=["nope.png"])


def test_distorted_photos_are_undistorted(tmp_path):
    root, poses, _ = capture(tmp_path)
    cap = load_capture(root, test_every=0)
    model = read_colmap_model(root)
    distorted = [v for v in cap.train if model.cameras[next(
        im for im in model.images if im.name == v.name).camera_id].is_distorted]
    assert len(distorted) == 1
    raw = np.asarray(Image.open(root / "images" / distorted[0].name), dtype=np.float32) / 255
    assert not np.allclose(distorted[0].image, raw)


def test_missing_photo_and_wrong_size(tmp_path):
    root, poses, _ = capture(tmp_path)
    missing = sorted(poses)[2]
    (root / "images" / missing).unlink()
    with pytest.raises(SplatforgeError, match=f"{missing}: listed in the COLMAP model but missing"):
        load_capture(root)
    write_photos(root, [missing], size=(32, 24))
    with pytest.raises(SplatforgeError, match=f"{missing} is 32x24, but camera"):
        load_capture(root)


def test_distorted_photos_at_a_downscale_are_read_once_undistorted_then_resized(tmp_path, monkeypatch):
    from splatforge.io.colmap import undistort_image
    from splatforge.capture import colmap

    root, poses, _ = capture(tmp_path)
    reads = []
    real_read = colmap.read_photo
    monkeypatch.setattr(colmap, "read_photo", lambda path, *a, **kw: reads.append(path.name) or real_read(path, *a, **kw))
    cap = load_capture(root, downscale=2, test_every=0)
    model = read_colmap_model(root)
    name = next(im.name for im in model.images if model.cameras[im.camera_id].is_distorted)
    assert reads.count(name) == 1
    assert not (root / "images_2_cache" / (name + ".png")).exists()  # no half-size copy of the distorted photo
    camera = model.cameras[next(im.camera_id for im in model.images if im.name == name)]
    full = np.asarray(Image.open(root / "images" / name), dtype=np.float32) / 255
    want = np.asarray(Image.fromarray((undistort_image(full, camera) * 255 + 0.5).astype(np.uint8)).resize(
        (32, 24), Image.LANCZOS), dtype=np.float32) / 255
    view = next(v for v in cap.train if v.name == name)
    np.testing.assert_array_equal(view.image, want)
    # with images_2/ present, its photo's size is kept (here one pixel narrower than rounding gives)
    (root / "images_2").mkdir()
    for other in poses:
        Image.new("RGB", (31, 24)).save(root / "images_2" / other)
    cap = load_capture(root, downscale=2, test_every=0)
    assert {v.image.shape for v in cap.train} == {(24, 31, 3)}


def test_the_long_side_rule_writes_nothing_into_the_capture(tmp_path, capsys):
    root, poses, _ = capture(tmp_path)
    cap = load_capture(root, long_side_limit=40, test_every=0)  # 64x48 photos: factor 2
    assert "photos resized from 64x48 to 32x24 (long side limit 40; --downscale overrides)" in capsys.readouterr().out
    assert {v.image.shape for v in cap.train} == {(24, 32, 3)}
    np.testing.assert_allclose(cap.train[0].K[0], [30.0, 0, 15.5])
    assert sorted(p.name for p in root.iterdir()) == ["images", "sparse"]
