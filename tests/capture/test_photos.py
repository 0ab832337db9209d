"""Photos at a training resolution: the long-side rule, EXIF rotation, mixed sizes, lens undistortion,
and instant-ngp's intrinsics keys."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from splatforge.capture import load_capture
from splatforge.capture.photos import Lens, remap, training_downscale, undistort
from splatforge.capture.transforms import parse_frames
from splatforge.io.colmap import ColmapCamera, undistort_image

K = np.array([[40.0, 0.0, 33.0], [0.0, 42.0, 23.5], [0.0, 0.0, 1.0]])


def pattern(x, y):  # a smooth image over normalized coordinates, [..., 3]
    return np.stack([0.5 + 0.4 * np.sin(8 * x), 0.5 + 0.4 * np.cos(7 * y), 0.5 + 0.3 * np.sin(6 * x + 5 * y)], -1)


def pixel_grid(w, h):
    ys, xs = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    return (xs - K[0, 2]) / K[0, 0], (ys - K[1, 2]) / K[1, 1]


def undistorted_coords(lens: Lens, xd: np.ndarray) -> np.ndarray:  # inverse of lens.distort, by iteration
    x = xd.copy()
    for _ in range(200):
        x = x + (xd - lens.distort(x))
    return x


@pytest.mark.parametrize("lens", [Lens("opencv", k1=0.2, k2=-0.05, k3=0.02, p1=0.002, p2=-0.001),
                                  Lens("fisheye", k1=0.05, k2=0.01, k3=-0.005, k4=0.001)])
def test_undistortion_recovers_the_pinhole_image(lens):
    w, h = 66, 47
    x, y = pixel_grid(w, h)
    pinhole = pattern(x, y).astype(np.float32)
    # the distorted photo: each of its pixels shows the scene point whose pinhole coordinates map there
    xy = undistorted_coords(lens, np.stack([x, y], -1))
    distorted = pattern(xy[..., 0], xy[..., 1]).astype(np.float32)
    inner = (slice(6, -6), slice(6, -6))
    before = np.abs(distorted[inner] - pinhole[inner]).max()
    assert before > 0.03  # the lens does something
    back = undistort(distorted, K, lens)
    assert np.abs(back[inner] - pinhole[inner]).max() < 0.2 * before


def test_the_general_remap_matches_colmaps_undistortion():
    rng = np.random.default_rng(0)
    image = rng.random((47, 66, 3), dtype=np.float32)
    lens = Lens("opencv", k1=0.07, k2=-0.01, p1=0.001, p2=0.002)
    reference = undistort_image(image, ColmapCamera(1, "OPENCV", 66, 47, K, np.array([0.07, -0.01, 0.001, 0.002])))
    np.testing.assert_allclose(remap(image, K, lens), reference, atol=1e-5)


def test_instant_ngp_keys_without_camera_model(tmp_path):
    Image.new("RGB", (64, 48)).save(tmp_path / "a.png")
    frame = {"file_path": "a", "transform_matrix": np.eye(4).tolist()}
    meta = {"camera_angle_x": 1.0, "k1": 0.1, "p2": 0.01, "frames": [frame]}
    (spec,) = parse_frames(meta, tmp_path / "transforms.json")
    assert spec.lens.model == "opencv" and spec.lens.k1 == 0.1 and spec.lens.p2 == 0.01
    assert spec.size == (64, 48)
    np.testing.assert_allclose(spec.K, [[32 / math.tan(0.5), 0, 32], [0, 32 / math.tan(0.5), 24], [0, 0, 1]])
    np.testing.assert_allclose(spec.viewmat, np.diag([1.0, -1.0, -1.0, 1.0]))  # OpenGL camera -> OpenCV
    (spec,) = parse_frames({**meta, "is_fisheye": True, "p2": 0.0}, tmp_path / "transforms.json")
    assert spec.lens.model == "fisheye"
    per_frame = {"frames": [{**frame, "fl_x": 50.0, "cx": 30.0, "cy": 20.0, "w": 64, "h": 48}]}
    (spec,) = parse_frames(per_frame, tmp_path / "transforms.json")
    np.testing.assert_allclose(spec.K, [[50, 0, 30], [0, 50, 20], [0, 0, 1]])
    assert spec.lens.model == "pinhole"


def test_long_side_rule_and_override(capsys):
    assert training_downscale([(4032, 3024)], None) == 5
    assert capsys.readouterr().out.strip() == ("photos resized from 4032x3024 to 806x605 "
                                              "(long side limit 1000; --downscale overrides)")
    assert training_downscale([(3024, 4032), (4032, 3024)], None, long_side_limit=2100) == 2
    assert training_downscale([(4032, 3024)], 1) == 1
    assert training_downscale([(800, 600)], None) == 1
    assert capsys.readouterr().out == "photos resized from 3024x4032 to 1512x2016 (long side limit 2100; " \
                                      "--downscale overrides)\n"


def _phone_capture(tmp_path, size=(1600, 1200)):
    """Three JPEG photos: landscape, portrait, and landscape pixels with EXIF orientation 6 (upright
    portrait), with a transforms.json whose intrinsics are for the upright photos."""
    rng = np.random.default_rng(0)
    w, h = size
    frames = []
    for i, (shape, orientation) in enumerate([((h, w), 1), ((w, h), 1), ((h, w), 6)]):
        pixels = (rng.random((shape[0] // 8, shape[1] // 8, 3)) * 255).astype(np.uint8)
        photo = Image.fromarray(pixels).resize((shape[1], shape[0]))
        exif = Image.Exif()
        exif[0x0112] = orientation
        photo.save(tmp_path / f"p{i}.jpg", exif=exif, quality=90)
        upright = (shape[1], shape[0]) if orientation == 1 else (shape[0], shape[1])
        c2w = np.eye(4)
        c2w[0, 3] = i
        frames.append({"file_path": f"p{i}.jpg", "w": upright[0], "h": upright[1], "fl_x": 1000.0, "fl_y": 1000.0,
                       "cx": upright[0] / 2, "cy": upright[1] / 2, "transform_matrix": c2w.tolist()})
    (tmp_path / "transforms.json").write_text(json.dumps({"frames": frames}))
    return tmp_path


def test_phone_photos_portrait_landscape_and_exif_rotated(tmp_path, capsys):
    root = _phone_capture(tmp_path)
    cap = load_capture(root, test_every=0, long_side_limit=500, init="none")
    assert "photos resized from 1600x1200 to 400x300 (long side limit 500; --downscale overrides)" in \
        capsys.readouterr().out
    shapes = {v.name: v.image.shape for v in cap.train}
    assert shapes == {"p0.jpg": (300, 400, 3), "p1.jpg": (400, 300, 3), "p2.jpg": (400, 300, 3)}
    for view in cap.train:  # K follows the photo: principal point at its centre, focal 1000 / 4
        h, w = view.image.shape[:2]
        np.testing.assert_allclose(view.K, [[250, 0, w / 2], [0, 250, h / 2], [0, 0, 1]])
    # the EXIF-rotated photo comes upright: the same pixels as rotating the stored image by hand
    stored = np.asarray(Image.open(root / "p2.jpg").convert("RGB").transpose(Image.Transpose.ROTATE_270)
                        .resize((300, 400), Image.LANCZOS), dtype=np.float32) / 255
    view = next(v for v in cap.train if v.name == "p2.jpg")
    assert np.abs(view.image - stored).mean() < 0.03  # JPEG's reduced-size decode differs a little
    again = load_capture(root, test_every=0, downscale=2, init="none")
    assert {v.image.shape for v in again.train} == {(600, 800, 3), (800, 600, 3)}


def test_lens_models_follow_opencv():
    # fisheye (equidistant): a ray at angle theta lands at radius theta (1 + k1 theta^2 + ...)
    theta = math.atan(0.5)
    radius = theta * (1 + 0.05 * theta**2 - 0.01 * theta**4)
    np.testing.assert_allclose(Lens("fisheye", k1=0.05, k2=-0.01).distort(np.array([0.3, 0.4])),
                               [0.3 / 0.5 * radius, 0.4 / 0.5 * radius], rtol=1e-12)
    # radial-tangential: 1 + k1 r^2 + k2 r^4 + k3 r^6, then OpenCV's tangential terms
    x, y, r2 = 0.3, -0.2, 0.13
    radial = 1 + 0.1 * r2 - 0.02 * r2**2 + 0.004 * r2**3
    want = [x * radial + 2 * 0.001 * x * y + 0.003 * (r2 + 2 * x * x),
            y * radial + 0.001 * (r2 + 2 * y * y) + 2 * 0.003 * x * y]
    np.testing.assert_allclose(Lens("opencv", k1=0.1, k2=-0.02, k3=0.004, p1=0.001, p2=0.003).distort(
        np.array([x, y])), want, rtol=1e-12)
