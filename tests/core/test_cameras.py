"""Camera construction in the OpenCV convention: where things land in the image."""

import math

import numpy as np
import pytest
import torch

from splatforge.core.cameras import (
    Camera,
    camera_center,
    focal_to_fov,
    fov_to_focal,
    intrinsics_from_focal,
    intrinsics_from_fov,
    look_at,
    orbit_path,
    project_points,
    stack_cameras,
)

K = intrinsics_from_focal(500.0, width=640, height=480)


def test_intrinsics_from_focal():
    expected = torch.tensor([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    torch.testing.assert_close(K, expected)
    assert K.dtype == torch.float32
    K2 = intrinsics_from_focal(np.float64(400), 410, cx=300.5, cy=200, dtype=torch.float64)
    expected = torch.tensor([[400.0, 0, 300.5], [0, 410, 200], [0, 0, 1]], dtype=torch.float64)
    torch.testing.assert_close(K2, expected)
    with pytest.raises(ValueError, match="focal lengths must be > 0"):
        intrinsics_from_focal(0.0, width=10, height=10)
    with pytest.raises(ValueError, match="pass width= or cx="):
        intrinsics_from_focal(100.0, height=10)
    with pytest.raises(ValueError, match="height must be > 0"):
        intrinsics_from_focal(100.0, width=10, height=0)


def test_fov_and_focal():
    assert fov_to_focal(90.0, 640) == pytest.approx(320.0)
    assert focal_to_fov(320.0, 640) == pytest.approx(90.0)
    assert focal_to_fov(fov_to_focal(37.0, 1000), 1000) == pytest.approx(37.0)
    torch.testing.assert_close(fov_to_focal(torch.tensor([90.0]), 640), torch.tensor([320.0]))
    Kf = intrinsics_from_fov(640, 480, fov_x_degrees=90.0)
    torch.testing.assert_close(Kf, intrinsics_from_focal(320.0, width=640, height=480))
    Ky = intrinsics_from_fov(640, 480, fov_y_degrees=90.0)
    assert Ky[0, 0] == Ky[1, 1] == pytest.approx(240.0)
    Kxy = intrinsics_from_fov(640, 480, fov_x_degrees=90.0, fov_y_degrees=90.0)
    assert (Kxy[0, 0], Kxy[1, 1]) == (pytest.approx(320.0), pytest.approx(240.0))
    with pytest.raises(ValueError, match=r"\(0, 180\)"):
        fov_to_focal(180.0, 100)
    with pytest.raises(ValueError, match="fov_x_degrees= or fov_y_degrees="):
        intrinsics_from_fov(640, 480)


CASES = [
    # eye, target, up
    ((0.0, -5.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    ((3.0, 2.0, 1.5), (0.5, -1.0, 0.2), (0.0, 0.0, 1.0)),
    ((1.0, 4.0, -2.0), (0.0, 0.0, 0.0), (0.0, 1.0, 0.0)),  # y-up world
    ((0.0, 0.0, -5.0), (0.0, 0.0, 0.0), (0.0, -1.0, 0.0)),  # OpenCV-camera world
    ((2.0, -1.0, 7.0), (0.0, 0.0, 0.0), (0.3, 0.2, 2.0)),  # up not orthogonal to the view
]


@pytest.mark.parametrize("eye,target,up", CASES)
def test_look_at_frames_the_target_upright(eye, target, up):
    viewmat = look_at(eye, target, up)
    assert viewmat.shape == (4, 4) and viewmat.dtype == torch.float32
    rot = viewmat[:3, :3].double()
    torch.testing.assert_close(rot @ rot.T, torch.eye(3, dtype=torch.float64), atol=1e-6, rtol=0)
    assert torch.linalg.det(rot) == pytest.approx(1.0, abs=1e-5)
    torch.testing.assert_close(camera_center(viewmat), torch.tensor(eye), atol=1e-5, rtol=0)

    eye_, target_, up_ = (np.array(v) for v in (eye, target, up))
    forward = (target_ - eye_) / np.linalg.norm(target_ - eye_)
    right = np.cross(forward, up_)
    right /= np.linalg.norm(right)
    up_perp = np.cross(right, forward)  # world up made orthogonal to the view
    points = np.stack([target_, target_ + 0.1 * up_perp, target_ + 0.1 * up_, target_ + 0.1 * right])
    points = torch.tensor(points, dtype=torch.float32)
    uv, depth = project_points(points, viewmat, K)
    # The target lands on the principal point, in front of the camera at its distance.
    torch.testing.assert_close(uv[0], torch.tensor([320.0, 240.0]), atol=1e-3, rtol=0)
    assert depth[0].item() == pytest.approx(np.linalg.norm(target_ - eye_), rel=1e-5)
    # Up in the world is up in the image (smaller v), straight above the target.
    assert uv[1, 1] < 240.0 - 1.0 and uv[1, 0] == pytest.approx(320.0, abs=1e-3)
    assert uv[2, 1] < 240.0 - 1.0
    # forward x up is to the right in the image (larger u).
    assert uv[3, 0] > 320.0 + 1.0 and uv[3, 1] == pytest.approx(240.0, abs=1e-3)


def test_default_up_is_world_z():
    viewmat = look_at((5.0, 0.0, 0.0), (0.0, 0.0, 0.0))
    # Camera y (down in the image) is world -z; facing -x with z up, the right hand points to +y.
    torch.testing.assert_close(viewmat[1, :3], torch.tensor([0.0, 0.0, -1.0]))
    torch.testing.assert_close(viewmat[0, :3], torch.tensor([0.0, 1.0, 0.0]))


def test_look_at_broadcasts_and_validates():
    eyes = torch.tensor([[0.0, -5.0, 0.0], [5.0, 0.0, 1.0]])
    batch = look_at(eyes, (0.0, 0.0, 0.0))
    assert batch.shape == (2, 4, 4)
    torch.testing.assert_close(batch[1], look_at(eyes[1], torch.zeros(3)))
    assert look_at((0, -1, 0), (0, 0, 0), dtype=torch.float64).dtype == torch.float64
    with pytest.raises(ValueError, match="eye and target are the same point"):
        look_at((1.0, 2.0, 3.0), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="up is parallel to the view direction"):
        look_at((0.0, 0.0, 5.0), (0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="up must be a non-zero vector"):
        look_at((0.0, 1.0, 5.0), (0.0, 0.0, 0.0), up=(0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match=r"eye must be \[\.\.\., 3\]"):
        look_at((0.0, 1.0), (0.0, 0.0, 0.0))


@pytest.mark.parametrize("up", [(0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 1.0, 0.0)])
def test_orbit_path_looks_at_the_centre(up):
    center = torch.tensor([1.0, -2.0, 0.5])
    radius, elevation = 3.0, 25.0
    viewmats = orbit_path(center, radius, 12, elevation_degrees=elevation, up=up)
    assert viewmats.shape == (12, 4, 4)
    uv, depth = project_points(center.expand(12, 1, 3), viewmats, K.expand(12, 3, 3))
    torch.testing.assert_close(uv[:, 0], torch.tensor([[320.0, 240.0]]).expand(12, 2), atol=1e-3, rtol=0)
    torch.testing.assert_close(depth[:, 0], torch.full((12,), radius), atol=1e-5, rtol=0)

    eyes = camera_center(viewmats).double()
    up_unit = torch.tensor(up, dtype=torch.float64) / torch.tensor(up).norm()
    offsets = eyes - center.double()
    full = lambda value: torch.full((12,), value, dtype=torch.float64)  # noqa: E731
    torch.testing.assert_close(offsets.norm(dim=-1), full(radius), atol=1e-5, rtol=0)
    heights = offsets @ up_unit
    torch.testing.assert_close(heights, full(radius * math.sin(math.radians(elevation))), atol=1e-5, rtol=0)
    # Evenly spaced, counter-clockwise about up: consecutive offsets turn by +30 degrees.
    flat = offsets - heights[:, None] * up_unit
    turn = torch.linalg.cross(flat, flat.roll(-1, 0), dim=-1) @ up_unit
    cos = (flat * flat.roll(-1, 0)).sum(-1) / flat.norm(dim=-1) ** 2
    angle = torch.rad2deg(torch.atan2(turn / flat.norm(dim=-1) ** 2, cos))
    torch.testing.assert_close(angle, full(30.0), atol=1e-4, rtol=0)


def test_orbit_path_start_and_validation():
    first = camera_center(orbit_path((0, 0, 0), 2.0, 4, elevation_degrees=0.0, start_azimuth_degrees=90.0))
    torch.testing.assert_close(first[0], torch.tensor([0.0, 2.0, 0.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(first[1], torch.tensor([-2.0, 0.0, 0.0]), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="radius must be > 0"):
        orbit_path((0, 0, 0), 0.0, 4)
    with pytest.raises(ValueError, match="n_views must be >= 1"):
        orbit_path((0, 0, 0), 1.0, 0)
    with pytest.raises(ValueError, match=r"elevation_degrees must be in \(-90, 90\)"):
        orbit_path((0, 0, 0), 1.0, 3, elevation_degrees=90.0)


def test_projection_matches_hand_computation():
    # Camera rotated 90 degrees about its z axis, then translated.
    rot = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    t = torch.tensor([0.5, -0.25, 4.0])
    viewmat = torch.eye(4)
    viewmat[:3, :3], viewmat[:3, 3] = rot, t
    Kh = intrinsics_from_focal(400.0, 300.0, cx=100.0, cy=50.0)
    point = torch.tensor([[1.0, 2.0, 3.0]])
    # By hand: camera = R p + t = (-2 + 0.5, 1 - 0.25, 3 + 4) = (-1.5, 0.75, 7).
    u = 400.0 * -1.5 / 7.0 + 100.0
    v = 300.0 * 0.75 / 7.0 + 50.0
    uv, depth = project_points(point, viewmat, Kh)
    torch.testing.assert_close(uv, torch.tensor([[u, v]]))
    torch.testing.assert_close(depth, torch.tensor([7.0]))
    homogeneous = Kh @ (viewmat @ torch.tensor([1.0, 2.0, 3.0, 1.0]))[:3]
    torch.testing.assert_close(homogeneous[:2] / homogeneous[2], torch.tensor([u, v]))


def test_camera_dataclass_and_stacking():
    cam = Camera(look_at((0, -3, 1), (0, 0, 0)), K, 640, 480)
    torch.testing.assert_close(cam.center, torch.tensor([0.0, -3.0, 1.0]), atol=1e-6, rtol=0)
    cam64 = cam.to(dtype=torch.float64)
    assert cam64.viewmat.dtype == cam64.K.dtype == torch.float64 and cam64.width == 640
    other = Camera(look_at((3, 0, 1), (0, 0, 0)), K, 640, 480)
    viewmats, Ks = stack_cameras([cam, other])
    assert viewmats.shape == (2, 4, 4) and Ks.shape == (2, 3, 3)
    torch.testing.assert_close(viewmats[1], other.viewmat)
    with pytest.raises(ValueError, match="share an image size"):
        stack_cameras([cam, Camera(cam.viewmat, K, 320, 240)])
    with pytest.raises(ValueError, match="at least one camera"):
        stack_cameras([])
    with pytest.raises(ValueError, match=r"viewmat must be \[4, 4\]"):
        Camera(torch.eye(3), K, 640, 480)
    with pytest.raises(ValueError, match="width must be a positive whole number"):
        Camera(torch.eye(4), K, 0, 480)


def test_garden_cameras_round_trip_through_camera_center():
    from pathlib import Path

    path = Path("/work/shared/data/test_garden.npz")
    if not path.exists():
        pytest.skip("shared garden data not present")
    data = np.load(path)
    viewmats = torch.from_numpy(data["viewmats"]).double()
    centers = camera_center(viewmats)
    # The centre maps to the camera origin.
    homogeneous = torch.cat([centers, torch.ones(len(centers), 1, dtype=torch.float64)], 1)
    origin = (viewmats @ homogeneous[..., None])[..., :3, 0]
    torch.testing.assert_close(origin, torch.zeros_like(origin), atol=1e-5, rtol=0)
