"""make_demo_capture: the written capture loads for training, its SfM points sit on surfaces the
photos show, and it is deterministic and idempotent."""

from __future__ import annotations

import json

import numpy as np
import pytest

pycolmap = pytest.importorskip("pycolmap")

from splatforge.core.cameras import fov_to_focal  # noqa: E402
from splatforge.demo.capture import make_demo_capture  # noqa: E402
from splatforge.demo.raycast import render_view  # noqa: E402
from splatforge.demo.scene import make_scene  # noqa: E402
from splatforge.errors import SplatforgeError  # noqa: E402
from splatforge.capture import load_capture  # noqa: E402
from splatforge.io.colmap import read_colmap_model  # noqa: E402

SMALL = dict(num_views=10, width=64, height=48, num_points=300)


@pytest.fixture(scope="module")
def capture_dir(tmp_path_factory):
    return make_demo_capture(tmp_path_factory.mktemp("demo") / "capture", seed=1, **SMALL)


def test_capture_loads_for_training(capture_dir):
    cap = load_capture(capture_dir)
    names = [f"view_{i:03d}.png" for i in range(10)]
    assert sorted(v.name for v in cap.train + cap.test) == names
    assert [v.name for v in cap.test] == [names[0], names[8]]  # every 8th held out
    focal = fov_to_focal(55.0, 64)
    for view in cap.train + cap.test:
        assert view.image.shape == (48, 64, 3)
        np.testing.assert_allclose(view.K, [[focal, 0, 32], [0, focal, 24], [0, 0, 1]])
        assert view.image.std() > 0.05  # a textured scene, not a flat colour
    assert cap.points.shape == (300, 3) and cap.colors.shape == (300, 3)
    model = read_colmap_model(capture_dir)
    assert len(model.cameras) == 1 and next(iter(model.cameras.values())).model == "PINHOLE"
    centers = np.stack([np.linalg.inv(im.viewmat)[:3, 3] for im in model.images])
    assert np.all(centers[:, 2] > 0.5)  # upper hemisphere
    assert len(np.unique(np.round(centers[:, 2], 6))) == 3  # three orbits
    manifest = json.loads((capture_dir / "demo.json").read_text())
    assert manifest["seed"] == 1 and manifest["num_views"] == 10 and manifest["background"] == [0.0, 0.0, 0.0]


def test_sfm_points_lie_on_visible_surfaces_with_their_colour(capture_dir):
    rec = pycolmap.Reconstruction(str(capture_dir / "sparse" / "0"))
    model = read_colmap_model(capture_dir)
    by_id = {im.image_id: im for im in model.images}
    k = next(iter(model.cameras.values())).K
    scene = make_scene(1)
    renders = {iid: render_view(scene, im.viewmat, k, 64, 48, samples_per_side=1) for iid, im in by_id.items()}
    photos = {iid: np.asarray(read_photo(capture_dir, im.name)) for iid, im in by_id.items()}
    colour_errors, depth_errors, observations = [], [], 0
    for point in rec.points3D.values():
        elements = point.track.elements
        assert len(elements) >= 2
        for el in elements:
            im = by_id[el.image_id]
            cam = im.viewmat[:3, :3] @ point.xyz + im.viewmat[:3, 3]
            u, v = k[0, 0] * cam[0] / cam[2] + k[0, 2], k[1, 1] * cam[1] / cam[2] + k[1, 2]
            xy = rec.image(el.image_id).points2D[el.point2D_idx].xy
            assert np.hypot(u - xy[0], v - xy[1]) < 0.5  # the stored keypoint is its projection
            assert 0 <= u < 64 and 0 <= v < 48 and cam[2] > 0
            i, j = int(u), int(v)
            render = renders[el.image_id]  # at the pixel centre: inf (background) beside a silhouette
            depth_errors.append(abs(render.depth[j, i] - cam[2]) / cam[2])
            colour_errors.append(np.abs(photos[el.image_id][j, i] / 255.0 - point.color / 255.0).max())
            observations += 1
    assert observations > 600
    depth_errors, colour_errors = np.array(depth_errors), np.array(colour_errors)
    # within a pixel the surface depth changes only at silhouettes; the colour only at texture edges
    assert np.median(depth_errors) < 0.01 and np.mean(depth_errors < 0.05) > 0.95
    assert np.median(colour_errors) < 0.06 and np.mean(colour_errors < 0.15) > 0.9


def read_photo(root, name):
    from PIL import Image

    with Image.open(root / "images" / name) as img:
        return np.asarray(img.convert("RGB"), dtype=np.float64)


def test_same_seed_same_capture_other_seed_other_scene(tmp_path, capture_dir):
    again = make_demo_capture(tmp_path / "again", seed=1, **SMALL)
    for name in ("view_000.png", "view_007.png"):
        assert (again / "images" / name).read_bytes() == (capture_dir / "images" / name).read_bytes()
    for name in ("cameras.bin", "images.bin", "points3D.bin"):
        assert (again / "sparse/0" / name).read_bytes() == (capture_dir / "sparse/0" / name).read_bytes()
    other = make_demo_capture(tmp_path / "other", seed=2, **SMALL)
    assert (other / "images/view_000.png").read_bytes() != (capture_dir / "images/view_000.png").read_bytes()


def test_idempotent_and_remade_when_parameters_change(tmp_path):
    root = make_demo_capture(tmp_path / "cap", num_views=4, width=32, height=24, num_points=50)
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    assert make_demo_capture(root, num_views=4, width=32, height=24, num_points=50) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == stamps
    load_capture(root, downscale=2)  # leaves a resized-image cache derived from these photos
    assert (root / "images_2_cache").is_dir()
    make_demo_capture(root, num_views=3, width=32, height=24, num_points=40)
    assert sorted(p.name for p in (root / "images").iterdir()) == ["view_000.png", "view_001.png", "view_002.png"]
    assert not (root / "images_2_cache").exists()
    assert json.loads((root / "demo.json").read_text())["num_views"] == 3
    assert len(load_capture(root).points) == 40
    (root / "images" / "view_001.png").unlink()  # an incomplete capture is made again
    make_demo_capture(root, num_views=3, width=32, height=24, num_points=40)
    assert (root / "images" / "view_001.png").is_file()


def test_bad_arguments_and_foreign_folders(tmp_path):
    with pytest.raises(SplatforgeError, match="num_views"):
        make_demo_capture(tmp_path / "a", num_views=1)
    with pytest.raises(SplatforgeError, match="width"):
        make_demo_capture(tmp_path / "a", width=3.5)
    with pytest.raises(SplatforgeError, match="num_points"):
        make_demo_capture(tmp_path / "a", num_points=0)
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "mine.jpg").write_bytes(b"x")
    with pytest.raises(SplatforgeError, match="not a demo capture"):
        make_demo_capture(tmp_path / "photos", num_views=3, width=32, height=24, num_points=10)
    assert (tmp_path / "photos" / "mine.jpg").read_bytes() == b"x"
    (tmp_path / "file").write_text("x")
    with pytest.raises(SplatforgeError, match="not a folder"):
        make_demo_capture(tmp_path / "file")


def test_sky_capture_has_sky_photos_low_orbits_and_no_sfm_point_in_the_sky(tmp_path):
    from splatforge.demo.capture import SKY_ELEVATIONS_DEGREES, make_sky_capture
    from splatforge.demo.raycast import render_view
    from splatforge.demo.scene import GROUND_RADIUS

    root = make_sky_capture(tmp_path / "sky", num_views=12, width=64, height=48, num_points=400, seed=3)
    cap = load_capture(root, normalize=False)
    assert json.loads((root / "demo.json").read_text())["sky"] is True
    views = sorted(cap.train + cap.test, key=lambda v: v.name)
    centers = np.stack([np.linalg.inv(v.viewmat)[:3, 3] for v in views])
    look_at = np.array(make_scene(3).look_at)
    elevations = np.degrees(np.arcsin((centers[:, 2] - look_at[2]) / np.linalg.norm(centers - look_at, axis=1)))
    np.testing.assert_allclose(sorted(set(np.round(elevations, 3))), SKY_ELEVATIONS_DEGREES, atol=1e-3)
    # held-out views (every 8th) lie on an orbit between two training views of it
    for test in cap.test:
        i = views.index(test)
        ring = np.flatnonzero(np.isclose(elevations, elevations[i]))
        assert len(ring) >= 3 and all(views[j] not in cap.test for j in ring if j != i)
    scene = make_scene(3, sky=True)
    k = views[0].K
    sky_pixels = 0
    for view in views:
        render = render_view(scene, view.viewmat, k, 64, 48, samples_per_side=1)
        sky = ~render.mask
        sky_pixels += int(sky.sum())
        if sky.any():  # the photo there is the sky, not the black background
            assert view.image[sky].mean() > 0.2
    assert sky_pixels > 0.15 * len(views) * 64 * 48
    # every SfM point lies on a surface of the scene, none in the sky or on the far hills
    assert np.all(np.linalg.norm(cap.points[:, :2], axis=1) <= GROUND_RADIUS + 0.05)
    assert np.all((cap.points[:, 2] > -0.05) & (cap.points[:, 2] < 2.0))


def test_the_sky_has_structure_and_the_default_scene_keeps_its_background():
    import torch

    from splatforge.core.cameras import look_at as look_at_matrix

    eye = np.array([3.5, 0.0, 0.5])
    viewmat = look_at_matrix(eye, (0.0, 0.0, 0.6), dtype=torch.float64).numpy()
    k = np.array([[60.0, 0, 64], [0, 60.0, 48], [0, 0, 1]])
    plain = render_view(make_scene(0), viewmat, k, 128, 96, samples_per_side=1)
    sky = render_view(make_scene(0, sky=True), viewmat, k, 128, 96, samples_per_side=1)
    empty = ~plain.mask
    assert empty[:20].all()  # the top rows see no surface
    assert np.all(plain.image[empty] == 0.0)
    np.testing.assert_array_equal(plain.image[~empty], sky.image[~empty])  # surfaces are lit the same
    top = sky.image[:20]
    assert top[..., 2].mean() > top[..., 0].mean() + 0.1  # blue
    assert top.std(axis=(0, 1)).max() > 0.03  # clouds, a gradient: not one flat colour
