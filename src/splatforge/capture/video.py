"""Frames for SfM from a video: the video cut into `num_frames` equal windows, the sharpest frame of
each window kept (sharpness: variance of the Laplacian, the usual blur measure), decoded by the
ffmpeg that imageio-ffmpeg ships and scaled down to the processing size as it is decoded.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import SplatforgeError

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".3gp", ".wmv")


def sharpness(gray: np.ndarray) -> float:  # [H, W] float
    """Variance of the 4-neighbour Laplacian: blurred frames have little high-frequency energy."""
    lap = (gray[1:-1, :-2] + gray[1:-1, 2:] + gray[:-2, 1:-1] + gray[2:, 1:-1] - 4.0 * gray[1:-1, 1:-1])
    return float(lap.var())


def _scale_filter(max_image_size: int) -> str:
    """ffmpeg filter: long side at most `max_image_size`, even sizes, never enlarged."""
    s = int(max_image_size)
    return (f"scale='if(gte(iw,ih),min({s},iw),-2)':'if(gte(iw,ih),-2,min({s},ih))'"
            ":flags=area")


def count_frames(video: Path) -> int:
    import imageio_ffmpeg

    try:
        frames, _ = imageio_ffmpeg.count_frames_and_secs(str(video))
    except (RuntimeError, OSError, ValueError) as err:
        raise SplatforgeError(f"{video} is not a video ffmpeg can read: {_first_line(err)}") from None
    return int(frames)


def extract_frames(
    video: str | os.PathLike,
    folder: str | os.PathLike,
    num_frames: int = 150,
    max_image_size: int = 1024,
    progress: bool = True,
) -> list[str]:
    """Write the sharpest frame of each of `num_frames` equal windows of `video` to `folder` as
    frame_00001.jpg, ... (all frames when the video has fewer); returns the file names.

    Frames come out upright (ffmpeg applies the rotation phones store in the video's metadata) and
    with their long side at most `max_image_size` pixels.

    Raises:
        SplatforgeError: the file is not a video ffmpeg can decode, or no frame of it decodes.
    """
    import imageio_ffmpeg
    from tqdm.auto import tqdm

    video, folder = Path(video), Path(folder)
    if num_frames < 1:
        raise SplatforgeError(f"num_frames must be at least 1, got {num_frames}")
    if not video.is_file():
        raise SplatforgeError(f"video not found: {video}")
    total = count_frames(video)
    if total == 0:
        raise SplatforgeError(f"{video}: no frame of this video can be decoded (empty, or not a video)")
    windows = min(num_frames, total)
    # frame index -> window: window w covers frames [w * total / windows, (w + 1) * total / windows)
    window_of = (np.arange(total) * windows) // total
    folder.mkdir(parents=True, exist_ok=True)
    best: dict[int, tuple[float, np.ndarray]] = {}
    names: list[str] = []
    reader = imageio_ffmpeg.read_frames(str(video), output_params=["-vf", _scale_filter(max_image_size)])
    index = -1
    try:
        meta = next(reader)
        width, height = meta["size"]
        bar = tqdm(total=total, desc="frames", unit="frame", disable=not progress, dynamic_ncols=True)
        with bar:
            for index, data in enumerate(reader):
                if index >= total:
                    break
                frame = np.frombuffer(data, np.uint8).reshape(height, width, 3)
                window = int(window_of[index])
                gray = frame[::2, ::2].astype(np.float32).mean(axis=2)
                score = sharpness(gray)
                if window not in best or score > best[window][0]:
                    best[window] = (score, frame.copy())
                if window_of[min(index + 1, total - 1)] != window or index == total - 1:
                    names.append(_save(folder, len(names) + 1, best.pop(window)[1]))
                bar.update(1)
    except StopIteration:
        raise SplatforgeError(f"{video}: ffmpeg found no video stream to decode") from None
    except (RuntimeError, OSError, ValueError) as err:
        where = f"frame {index + 1}" if index >= 0 else "its first frame"
        raise SplatforgeError(f"{video}: decoding failed at {where} of {total}: {_first_line(err)}") from None
    finally:
        reader.close()
    for window in sorted(best):  # the video ended before its counted frames did
        names.append(_save(folder, len(names) + 1, best.pop(window)[1]))
    if not names:
        raise SplatforgeError(f"{video}: no frame of this video can be decoded")
    return names


def _save(folder: Path, number: int, frame: np.ndarray) -> str:
    name = f"frame_{number:05d}.jpg"
    Image.fromarray(frame).save(folder / name, quality=95)
    return name


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
