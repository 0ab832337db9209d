"""write_video and scene_orbit: real MP4s read back with ffmpeg; failures leave nothing behind."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splatforge.core.cameras import look_at
from splatforge.core.gaussians import Gaussians
from splatforge.errors import SplatforgeError
from splatforge.render.video import look_target, scene_orbit, write_video

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")


def _frames(n, h=31, w=45):
    """Flat colours, one per frame: easy to check after lossy H.264."""
    for i in range(n):
        yield np.full((h, w, 3), (i * 40 % 256, 128, 255 - i * 40 % 256), np.uint8)


def _read(path):
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    frames = [np.frombuffer(f, np.uint8).reshape(meta["size"][1], meta["size"][0], 3) for f in reader]
    return meta, frames


def test_frames_come_back_padded_to_even_sizes(tmp_path):
    path = write_video(_frames(5), tmp_path / "out" / "orbit.mp4", fps=10)
    meta, frames = _read(path)
    assert meta["size"] == (46, 32) and len(frames) == 5
    for i, frame in enumerate(frames):
        expected = np.array([i * 40 % 256, 128, 255 - i * 40 % 256])
        assert np.abs(frame[8:-8, 8:-8].reshape(-1, 3).mean(0) - expected).max() < 6
    assert sorted(p.name for p in path.parent.iterdir()) == ["orbit.mp4"]


def test_float_and_grey_frames(tmp_path):
    grey = [np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16)] * 2
    _, frames = _read(write_video(grey, tmp_path / "g.mp4"))
    assert len(frames) == 2 and frames[0].shape == (16, 16, 3)
    assert frames[0][0, 0].mean() < 40 and frames[0][-1, -1].mean() > 215


def test_a_failure_mid_video_leaves_no_file(tmp_path):
    (tmp_path / "keep.mp4").write_bytes(b"an older video")

    def failing():
        yield from _frames(3)
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError, match="renderer crashed"):
        write_video(failing(), tmp_path / "keep.mp4")
    with pytest.raises(SplatforgeError, match="no frames"):
        write_video([], tmp_path / "empty.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.mp4"]
    assert (tmp_path / "keep.mp4").read_bytes() == b"an older video"


def test_two_writers_of_one_name_do_not_collide(tmp_path):
    # The second video is written while the first is still encoding (a second job with the same
    # output name); each must own its temporary file, and the last one finished wins.
    target = tmp_path / "same.mp4"

    def first():
        yield from _frames(2)
        write_video(_frames(4), target)
        yield from _frames(1)

    write_video(first(), target)
    _, frames = _read(target)
    assert len(frames) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.mp4"]


def test_look_target_is_where_the_optical_axes_meet():
    centre = np.array([0.5, -1.0, 2.0])
    eyes = centre + np.array([[3.0, 0, 0], [0, 3.0, 0.5], [-2.0, -2.0, 1.0]])
    viewmats = look_at(torch.tensor(eyes), torch.tensor(centre), dtype=torch.float64).numpy()
    np.testing.assert_allclose(look_target(viewmats), centre, atol=1e-9)


def test_orbit_around_a_capture_keeps_its_radius_and_centre():
    centre = np.array([1.0, 2.0, 0.5])
    angles = np.linspace(0, np.pi, 6)
    eyes = centre + np.stack([2 * np.cos(angles), 2 * np.sin(angles), np.full(6, 0.7)], 1)
    capture = look_at(torch.tensor(eyes), torch.tensor(centre), dtype=torch.float64).numpy()
    viewmats, ks = scene_orbit(8, 64, 48, capture_viewmats=capture)
    assert viewmats.shape == (8, 4, 4) and ks.shape == (8, 3, 3)
    c2w = torch.linalg.inv(viewmats.double())
    radii = (c2w[:, :3, 3] - torch.tensor(centre)).norm(dim=1)
    torch.testing.assert_close(radii, torch.full((8,), float(np.linalg.norm(eyes[0] - centre)), dtype=torch.float64),
                               atol=1e-4, rtol=0)
    # every camera looks at the centre: it projects to the principal point
    cam = viewmats.double() @ torch.tensor([*centre, 1.0])
    pix = (ks.double() @ cam[:, :3, None])[..., 0]
    torch.testing.assert_close(pix[:, :2] / pix[:, 2:], torch.tensor([[32.0, 24.0]]).expand(8, 2).double(),
                               atol=1e-3, rtol=0)


def test_orbit_around_gaussians_frames_them_and_needs_something():
    g = Gaussians.from_points(torch.randn(200, 3, generator=torch.Generator().manual_seed(0)) + 5.0,
                              sh_degree=0, scale=0.05, opacity=0.9)
    viewmats, ks = scene_orbit(4, 64, 64, gaussians=g)
    depth = (viewmats[:, None, :3, :3] @ g.means[None, :, :, None])[..., 0] + viewmats[:, None, :3, 3]
    assert bool((depth[..., 2] > 0).all())  # every Gaussian in front of every camera
    with pytest.raises(SplatforgeError, match="needs the scene"):
        scene_orbit(4, 64, 64)
    with pytest.raises(SplatforgeError, match="at least one view"):
        scene_orbit(0, 64, 64, gaussians=g)
