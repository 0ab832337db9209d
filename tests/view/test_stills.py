"""Stills: viser's camera pose becomes the right viewmat and K, and the still is rasterization()'s image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from splatforge.core.cameras import look_at, project_points
from splatforge.core.images import load_image
from splatforge.raster.api import rasterization
from splatforge.view.stills import (camera_from_pose, pose_from_viewmat, render_still, rotation_from_wxyz, save_still,
                                    wxyz_from_rotation)

from .conftest import FOV_50, look_pose


def test_quaternions_round_trip_for_every_angle():
    gen = np.random.default_rng(0)
    quats = list(gen.normal(size=(200, 4))) + [np.array(q, float) for q in
                                                ([1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 1, 1, 0])]
    for q in quats:
        rot = rotation_from_wxyz(q)
        np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(rotation_from_wxyz(wxyz_from_rotation(rot)), rot, atol=1e-12)


def test_pose_gives_the_look_at_camera_and_a_centred_vertical_fov():
    eye, target = np.array([1.0, -3.0, 1.5]), np.array([0.2, 0.1, -0.3])
    wxyz, position = look_pose(eye, target)
    np.testing.assert_allclose(position, eye, atol=1e-12)
    cam = camera_from_pose(wxyz, position, FOV_50, 640, 480, max_size=None)
    torch.testing.assert_close(cam.viewmat, look_at(eye, target), atol=1e-5, rtol=0)
    assert (cam.width, cam.height) == (640, 480)
    # the target projects to the image centre; a point at the top edge of the vertical fov to row 0
    up_in_view = -cam.viewmat[1, :3].double().numpy()  # camera -y in world coordinates
    forward = cam.viewmat[2, :3].double().numpy()
    top = eye + forward + math.tan(FOV_50 / 2) * up_in_view
    pix, depth = project_points(torch.tensor(np.stack([target, top]), dtype=torch.float32), cam.viewmat, cam.K)
    torch.testing.assert_close(pix[0], torch.tensor([320.0, 240.0]), atol=1e-3, rtol=0)
    assert abs(float(pix[1, 1])) < 1e-3 and float(depth[1]) > 0


def test_max_size_keeps_aspect_and_field_of_view():
    wxyz, position = look_pose([0, -3, 1], [0, 0, 0])
    big = camera_from_pose(wxyz, position, FOV_50, 3840, 2160, max_size=960)
    assert (big.width, big.height) == (960, 540)
    assert math.isclose(2 * math.atan(540 / 2 / float(big.K[1, 1])), FOV_50, rel_tol=1e-6)
    with pytest.raises(ValueError, match="field of view"):
        camera_from_pose(wxyz, position, 0.0, 64, 48)


def test_still_is_rasterization_for_the_same_camera(red_blob, tmp_path):
    wxyz, position = look_pose([0.3, -2.5, 0.8], [0, 0, 0])
    cam = camera_from_pose(wxyz, position, FOV_50, 160, 120)
    still = render_still(red_blob, cam)
    g = red_blob
    # the camera built here from the pose with look_at, not the one the viewer computed
    viewmat = look_at([0.3, -2.5, 0.8], [0.0, 0.0, 0.0])[None]
    focal = 60 / math.tan(FOV_50 / 2)
    ks = torch.tensor([[[focal, 0, 80], [0, focal, 60], [0, 0, 1]]])
    colors, alphas, _ = rasterization(g.means, g.quats, torch.exp(g.scales), torch.sigmoid(g.opacities),
                                      torch.cat([g.sh0, g.shN], 1), viewmat, ks, 160, 120, sh_degree=1,
                                      backgrounds=torch.ones(1, 3))
    np.testing.assert_allclose(still.rgb, colors[0].clamp(0, 1).numpy(), atol=2e-4)
    np.testing.assert_allclose(still.alpha, alphas[0, ..., 0].numpy(), atol=2e-4)
    assert still.alpha.max() > 0.99 and still.alpha.min() < 0.01  # the blob is in view, with margins
    depths, _, _ = rasterization(g.means, g.quats, torch.exp(g.scales), torch.sigmoid(g.opacities),
                                 torch.cat([g.sh0, g.shN], 1), viewmat, ks, 160, 120, sh_degree=1, render_mode="ED")
    covered = still.alpha > 0.5
    np.testing.assert_allclose(still.depth[covered], depths[0, ..., 0].numpy()[covered], rtol=1e-3)
    distance = float(np.linalg.norm([0.3, -2.5, 0.8]))
    assert abs(float(np.median(still.depth[covered])) - distance) < 0.5
    paths = save_still(still, tmp_path, "still_0001")
    assert [p.name for p in paths] == ["still_0001_rgb.png", "still_0001_depth.png", "still_0001_alpha.png",
                                       "still_0001_depth.npy"]
    np.testing.assert_allclose(load_image(paths[0]), still.rgb, atol=1 / 255)
    np.testing.assert_array_equal(np.load(paths[3]), still.depth)


def test_pose_from_viewmat_inverts_camera_from_pose():
    viewmat = look_at([2.0, 1.0, -1.0], [0.0, 0.5, 0.0], dtype=torch.float64).numpy()
    wxyz, position = pose_from_viewmat(viewmat)
    again = camera_from_pose(wxyz, position, FOV_50, 64, 48).viewmat.double().numpy()
    np.testing.assert_allclose(again, viewmat, atol=1e-6)
