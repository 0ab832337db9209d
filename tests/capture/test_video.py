"""Frames from a video for SfM: the sharpest of each window, and a video through `capture`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

pytest.importorskip("pycolmap")
imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")

from splatforge.capture.sfm import SfmConfig, run_sfm  # noqa: E402
from splatforge.capture.video import extract_frames, sharpness  # noqa: E402
from splatforge.errors import SplatforgeError  # noqa: E402

from .test_sfm_data import BUDDHA, FOX, buddha_names, fox_cameras, fox_names, pose_errors  # noqa: E402


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    height, width = frames[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=fps, quality=9, macro_block_size=8)
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path


def photo(name: str, dataset: Path = BUDDHA) -> np.ndarray:
    return np.asarray(Image.open(dataset / "images" / name).convert("RGB"))


def test_the_sharpest_frame_of_each_window_is_kept(tmp_path):
    names = buddha_names()[:5]
    frames, sharp_at = [], []
    for i, name in enumerate(names):  # windows of 3 frames: the sharp photo at a different place in each
        sharp = photo(name)
        blurred = np.asarray(Image.fromarray(sharp).filter(ImageFilter.GaussianBlur(3)))
        window = [blurred, blurred, blurred]
        window[i % 3] = sharp
        frames += window
        sharp_at.append(sharp)
    video = write_video(tmp_path / "walk.mp4", frames)
    kept = extract_frames(video, tmp_path / "frames", num_frames=5, max_image_size=1024, progress=False)
    assert kept == [f"frame_{i:05d}.jpg" for i in range(1, 6)]
    for name, sharp in zip(kept, sharp_at):
        got = np.asarray(Image.open(tmp_path / "frames" / name).convert("L"), np.float32)
        want = sharp.mean(axis=2)
        assert sharpness(got) > 0.5 * sharpness(want)  # the blurred frames have a small fraction of it
        assert np.abs(got - want).mean() < 6.0


def test_frames_are_scaled_to_the_processing_size_and_a_short_video_gives_every_frame(tmp_path):
    video = write_video(tmp_path / "short.mp4", [photo(n) for n in buddha_names()[:4]])
    kept = extract_frames(video, tmp_path / "frames", num_frames=50, max_image_size=256, progress=False)
    assert len(kept) == 4
    with Image.open(tmp_path / "frames" / kept[0]) as im:
        assert im.size == (256, 144)


def test_a_phone_video_goes_through_capture_with_the_default_sequential_matching(tmp_path):
    """The fox's 50 frames (a handheld phone video, in shooting order) as an MP4: every frame posed by
    the default path for videos (sequential matching, incremental mapping), and the cameras agree
    with instant-ngp's."""
    import pycolmap

    names = fox_names()
    video = write_video(tmp_path / "fox.mp4", [photo(n, FOX) for n in names])
    report = run_sfm(video, tmp_path / "capture", SfmConfig(progress=False))
    assert report.matcher == "sequential" and report.num_images == len(names)
    assert len(report.registered) == len(names)
    model = pycolmap.Reconstruction(str(tmp_path / "capture" / "sparse" / "0"))
    frames = [f"frame_{i:05d}.jpg" for i in range(1, len(names) + 1)]  # frame i is the i-th photo
    mean_rotation, max_rotation, centres = pose_errors(model, frames, fox_cameras(names))
    assert mean_rotation < 0.5 and max_rotation < 2.0 and centres < 0.01


@pytest.mark.parametrize("content", [b"", b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100])
def test_a_video_with_no_decodable_frame_is_named_and_nothing_is_written(tmp_path, content):
    video = tmp_path / "broken.mp4"
    video.write_bytes(content)
    with pytest.raises(SplatforgeError, match="broken.mp4"):
        run_sfm(video, tmp_path / "capture", SfmConfig(progress=False))
    assert not (tmp_path / "capture").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
