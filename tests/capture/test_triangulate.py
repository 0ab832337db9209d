"""Triangulation with known poses (pycolmap, poses fixed) on real photos: with the poses SfM found, and
with the Buddha dataset's own cameras."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pycolmap = pytest.importorskip("pycolmap")

from splatforge.capture.triangulate import triangulate_known_poses, triangulated_model  # noqa: E402
from splatforge.errors import SplatforgeError  # noqa: E402
from splatforge.io.colmap import read_colmap_model, undistort_image  # noqa: E402

from .test_sfm_data import BUDDHA, buddha_names, dataset_cameras, phone_sfm  # noqa: E402, F401


def load(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0


def test_points_from_the_sfm_poses_lie_in_the_sfm_points_bounds_with_low_error(phone_sfm):
    model = read_colmap_model(phone_sfm)
    images, Ks, viewmats = [], [], []
    for view in model.images:
        camera = model.cameras[view.camera_id]
        images.append(undistort_image(load(phone_sfm / "images" / view.name), camera))
        Ks.append(camera.K)
        viewmats.append(view.viewmat)
    Ks, viewmats = np.stack(Ks), np.stack(viewmats)

    result = triangulated_model(images, Ks, viewmats, progress=False)
    assert result.num_points3D() > 200
    assert result.compute_mean_reprojection_error() < 1.0
    # the poses were held fixed (images are named by their index in the input)
    held = {int(im.name.split(".")[0]): im.cam_from_world().matrix() for im in result.images.values()}
    for i, viewmat in enumerate(viewmats):
        np.testing.assert_allclose(held[i], viewmat[:3, :4], atol=1e-9)

    points = np.array([p.xyz for p in result.points3D.values()])
    low, high = np.percentile(model.points, 1, axis=0), np.percentile(model.points, 99, axis=0)
    margin = 0.1 * (high - low)
    inside = np.all((points > low - margin) & (points < high + margin), axis=1)
    assert inside.mean() > 0.95


def test_the_datasets_own_cameras_triangulate_the_photos(tmp_path):
    names = buddha_names()[20:36]
    images = [load(BUDDHA / "images" / n) for n in names]
    Ks, viewmats = dataset_cameras(names, (images[0].shape[1], images[0].shape[0]))
    points, colors = triangulate_known_poses(images, Ks, viewmats, progress=False)
    assert points.dtype == np.float64 and points.shape[1] == 3 and len(points) >= 100  # measured: 152
    assert colors.dtype == np.uint8 and colors.shape == points.shape
    assert np.all(colors[:, 0] == colors[:, 1])  # gray photos give gray points
    # every point lies in front of the cameras that see the head (AliceVision's frame)
    depth = np.einsum("cij,nj->cni", viewmats[:, :3, :3], points)[..., 2] + viewmats[:, None, 2, 3]
    assert np.mean(depth > 0) > 0.95


def test_photos_with_nothing_in_common_raise(tmp_path):
    rng = np.random.default_rng(1)
    names = buddha_names()[20:24]
    images = [rng.random((144, 256, 3), dtype=np.float32) for _ in names]
    Ks, viewmats = dataset_cameras(names, (256, 144))
    with pytest.raises(SplatforgeError, match="found \\d+ points"):
        triangulate_known_poses(images, Ks, viewmats, progress=False)


def test_bad_shapes_and_a_single_photo_are_refused():
    image = np.zeros((10, 12, 3), np.float32)
    with pytest.raises(ValueError, match="Ks"):
        triangulate_known_poses([image, image], np.eye(3)[None], np.eye(4)[None].repeat(2, 0), progress=False)
    with pytest.raises(SplatforgeError, match="two posed photos"):
        triangulate_known_poses([image], np.eye(3)[None], np.eye(4)[None], progress=False)
