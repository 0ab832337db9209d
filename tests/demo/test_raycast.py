"""The demo ray caster against a slow, obviously-right per-pixel reference, plus its textures,
antialiasing, determinism and input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from splatforge.core.cameras import look_at
from splatforge.demo.raycast import (cast_rays, linear_to_srgb, pixel_rays, render_view, surface_normals,
                                     texture_albedo)
from splatforge.demo.scene import Box, Cylinder, GroundDisk, Scene, Sphere, Texture, make_scene
from splatforge.errors import SplatforgeError

W, H = 16, 12
K = np.array([[14.0, 0.0, 8.0], [0.0, 15.0, 6.0], [0.0, 0.0, 1.0]])
GROUND_ALBEDO = (0.5, 0.4, 0.3)
SPHERE_ALBEDO = (0.2, 0.6, 0.8)
SPHERE_CENTER, SPHERE_RADIUS = np.array([0.2, -0.1, 0.5]), 0.5
LIGHT = np.array([0.3, -0.2, 0.9]) / np.linalg.norm([0.3, -0.2, 0.9])


def plain(color) -> Texture:
    return Texture("gradient", color, color, scale=1.0)


def sphere_and_plane() -> Scene:
    return Scene(shapes=(GroundDisk(2.5, plain(GROUND_ALBEDO)), Sphere(tuple(SPHERE_CENTER), SPHERE_RADIUS,
                                                                      plain(SPHERE_ALBEDO))),
                 light_direction=tuple(LIGHT), light_intensity=0.8, ambient=0.25, background=(0.1, 0.2, 0.3))


def camera() -> np.ndarray:
    return look_at((2.2, -2.6, 1.6), (0.0, 0.0, 0.3), dtype=torch.float64).numpy()


def sphere_hit(o, d, center=SPHERE_CENTER, radius=SPHERE_RADIUS):
    """Nearest positive root of |o + t d - c|^2 = r^2 (d unit), or None."""
    oc = o - center
    b = float(oc @ d)
    disc = b * b - (float(oc @ oc) - radius**2)
    if disc < 0:
        return None
    for t in (-b - math.sqrt(disc), -b + math.sqrt(disc)):
        if t > 1e-6:
            return t
    return None


def plane_hit(o, d, radius=2.5):
    if d[2] == 0:
        return None
    t = -o[2] / d[2]
    p = o + t * d
    return t if t > 1e-6 and p[0] ** 2 + p[1] ** 2 <= radius**2 else None


def reference_pixel(viewmat, i, j):
    """Depth, shape index and sRGB colour of the ray through the centre of pixel (i, j)."""
    rot, t = viewmat[:3, :3], viewmat[:3, 3]
    origin = -rot.T @ t
    d_cam = np.array([(i + 0.5 - K[0, 2]) / K[0, 0], (j + 0.5 - K[1, 2]) / K[1, 1], 1.0])
    d = rot.T @ d_cam / np.linalg.norm(d_cam)
    hits = [(h, s) for s, h in ((0, plane_hit(origin, d)), (1, sphere_hit(origin, d))) if h is not None]
    if not hits:
        return np.inf, -1, np.array([0.1, 0.2, 0.3])
    dist, shape = min(hits)
    p = origin + dist * d
    if shape == 1:
        normal, albedo = (p - SPHERE_CENTER) / SPHERE_RADIUS, np.array(SPHERE_ALBEDO)
    else:
        normal, albedo = np.array([0.0, 0.0, 1.0]), np.array(GROUND_ALBEDO)
    lambert = max(float(normal @ LIGHT), 0.0)
    if lambert > 0 and shape == 0 and sphere_hit(p, LIGHT) is not None:
        lambert = 0.0  # the ground in the sphere's shadow
    linear = albedo * (0.25 + 0.8 * lambert)
    return dist * float(d @ rot[2]), shape, linear_to_srgb(linear)


def test_render_matches_per_pixel_reference():
    scene, viewmat = sphere_and_plane(), camera()
    view = render_view(scene, viewmat, K, W, H, samples_per_side=1)
    assert view.image.shape == (H, W, 3) and view.depth.shape == (H, W) and view.image.dtype == np.float32
    shapes_seen = set()
    for j in range(H):
        for i in range(W):
            depth, shape, color = reference_pixel(viewmat, i, j)
            assert view.shape_index[j, i] == shape, (i, j)
            shapes_seen.add(shape)
            if shape >= 0:
                assert view.depth[j, i] == pytest.approx(depth, rel=1e-9, abs=1e-9)
            else:
                assert view.depth[j, i] == np.inf and not view.mask[j, i]
            np.testing.assert_allclose(view.image[j, i], color, atol=1e-5, err_msg=f"pixel {(i, j)}")
    assert shapes_seen == {-1, 0, 1}  # the view shows sphere, ground and background


def test_shadow_is_cast_on_the_ground():
    scene = sphere_and_plane()
    below = SPHERE_CENTER - LIGHT * (SPHERE_CENTER[2] / LIGHT[2])  # the sphere's centre projected along the light
    eye = below + np.array([-1.5, 1.0, 2.0])  # beyond the shadow, so the sphere is behind it
    viewmat = look_at(eye, below, dtype=torch.float64).numpy()
    view = render_view(scene, viewmat, K, W, H, samples_per_side=1)
    # pixel centre nearest to the shadow centre shows the ground lit by ambient light only
    uv = K @ (viewmat[:3, :3] @ below + viewmat[:3, 3])
    i, j = int(uv[0] / uv[2]), int(uv[1] / uv[2])
    assert view.shape_index[j, i] == 0
    np.testing.assert_allclose(view.image[j, i], linear_to_srgb(np.array(GROUND_ALBEDO) * 0.25), atol=1e-5)


def test_boxes_and_cylinders_hit_their_surfaces():
    box = Box((0.3, -0.2, 0.35), (0.4, 0.25, 0.35), 30.0, plain((0.5, 0.5, 0.5)))
    cyl = Cylinder((-0.6, 0.4), 0.3, 0.0, 0.9, plain((0.5, 0.5, 0.5)))
    scene = Scene(shapes=(box, cyl), light_direction=(0.0, 0.0, 1.0))
    rng = np.random.default_rng(3)
    origins = rng.normal(size=(4000, 3))
    origins *= 4.0 / np.linalg.norm(origins, axis=1, keepdims=True)  # outside both shapes
    targets = rng.uniform(-0.8, 0.8, size=(4000, 3)) + [0, 0, 0.4]
    dist, index = cast_rays(scene, origins, targets - origins)
    dirs = (targets - origins) / np.linalg.norm(targets - origins, axis=1, keepdims=True)
    assert (index == 0).sum() > 500 and (index == 1).sum() > 500 and (index == -1).sum() > 100
    points = origins + dist[:, None] * dirs
    b = index == 0
    local = (points[b] - box.center) @ box.rotation / box.half_size
    np.testing.assert_allclose(np.abs(local).max(axis=1), 1.0, atol=1e-9)  # on the box's surface
    c = index == 1
    radial = np.hypot(points[c, 0] - cyl.center[0], points[c, 1] - cyl.center[1])
    on_side = np.isclose(radial, cyl.radius, atol=1e-9)
    on_cap = np.isclose(points[c, 2], cyl.z_max, atol=1e-9) | np.isclose(points[c, 2], cyl.z_min, atol=1e-9)
    assert np.all(on_side | (on_cap & (radial <= cyl.radius + 1e-9)))
    assert np.all((points[c, 2] >= cyl.z_min - 1e-9) & (points[c, 2] <= cyl.z_max + 1e-9))
    # outward normals face the incoming rays (first hits are on the near side)
    normals = surface_normals(scene, points[index >= 0], index[index >= 0])
    assert np.all(np.einsum("ij,ij->i", normals, dirs[index >= 0]) < 1e-9)
    # a ray that starts inside a box leaves through its far side
    inside_t, inside_i = cast_rays(scene, np.array([box.center]), np.array([[0.0, 0.0, 1.0]]))
    assert inside_i[0] == 0 and inside_t[0] == pytest.approx(box.half_size[2])


def test_textures_are_smooth_and_use_both_colours():
    a, b = (0.8, 0.1, 0.1), (0.1, 0.1, 0.8)
    line = np.stack([np.linspace(-1, 1, 2001), np.linspace(-0.5, 0.7, 2001), np.linspace(0.1, 0.4, 2001)], axis=1)
    step = np.linalg.norm(line[1] - line[0])
    for kind, scale in (("checker", 0.25), ("stripes", 0.2), ("noise", 0.22), ("gradient", 1.0)):
        albedo = texture_albedo(Texture(kind, a, b, scale=scale, axis=(1.0, 0.2, 0.1), offset=-0.5, seed=5), line)
        assert np.all((albedo >= 0) & (albedo <= 1))
        assert albedo[:, 0].max() - albedo[:, 0].min() > 0.3, kind  # both colours appear
        # bounded slope: no feature narrower than a few hundredths of a unit (a splat can learn it)
        slope = np.abs(np.diff(albedo, axis=0)).max() / step
        assert slope < 0.7 / 0.02, (kind, slope)


def test_antialiasing_blends_edge_pixels():
    scene, viewmat = sphere_and_plane(), camera()
    k = K * [[4.0], [4.0], [1.0]]
    sharp = render_view(scene, viewmat, k, W * 4, H * 4, samples_per_side=1)
    smooth = render_view(scene, viewmat, k, W * 4, H * 4, samples_per_side=3)
    # depth and shape index come from the pixel-centre ray whatever the sample count
    assert np.array_equal(sharp.shape_index, smooth.shape_index) and np.array_equal(sharp.depth, smooth.depth)
    index = sharp.shape_index
    boundary = np.zeros_like(index, dtype=bool)
    for axis in (0, 1):
        change = np.diff(index, axis=axis) != 0
        boundary |= np.pad(change, [(0, 1) if a == axis else (0, 0) for a in (0, 1)])
        boundary |= np.pad(change, [(1, 0) if a == axis else (0, 0) for a in (0, 1)])
    changed = np.abs(smooth.image - sharp.image).max(axis=2) > 0.02
    assert changed[boundary].mean() > 0.3  # silhouette pixels are blended
    assert changed[~boundary].mean() < 0.05  # interiors barely (only shadow edges, the sphere's terminator)
    assert abs(float(smooth.image.mean() - sharp.image.mean())) < 0.01


def test_determinism_and_seeds():
    assert make_scene(3) == make_scene(3)
    assert make_scene(3) != make_scene(4)
    viewmat = look_at((3.0, 1.0, 2.0), (0.0, 0.0, 0.3), dtype=torch.float64).numpy()
    k = np.array([[30.0, 0, 16], [0, 30.0, 12], [0, 0, 1]])
    one = render_view(make_scene(3), viewmat, k, 32, 24)
    two = render_view(make_scene(3), viewmat, k, 32, 24)
    other = render_view(make_scene(4), viewmat, k, 32, 24)
    assert np.array_equal(one.image, two.image) and np.array_equal(one.depth, two.depth)
    assert not np.array_equal(one.image, other.image)


def test_bad_input_is_a_clear_error():
    scene, viewmat = sphere_and_plane(), camera()
    with pytest.raises(SplatforgeError, match="viewmat must be"):
        render_view(scene, viewmat[:3], K, W, H)
    with pytest.raises(SplatforgeError, match="not a rotation"):
        render_view(scene, viewmat * 2, K, W, H)
    with pytest.raises(SplatforgeError, match="image size"):
        render_view(scene, viewmat, K, 0, H)
    with pytest.raises(SplatforgeError, match="samples_per_side"):
        render_view(scene, viewmat, K, W, H, samples_per_side=0)
    with pytest.raises(SplatforgeError, match="must both be"):
        cast_rays(scene, np.zeros((3, 3)), np.ones((2, 3)))
    with pytest.raises(SplatforgeError, match="non-zero"):
        cast_rays(scene, np.zeros((1, 3)), np.zeros((1, 3)))
    with pytest.raises(SplatforgeError, match="texture kind"):
        Texture("plaid", (0, 0, 0), (1, 1, 1), scale=1.0)
    with pytest.raises(SplatforgeError, match="background"):
        make_scene(0, background=(2.0, 0.0, 0.0))
    origins, dirs = pixel_rays(viewmat, K, np.array([8.0]), np.array([6.0]))
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0)
