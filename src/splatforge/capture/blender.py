"""Blender NeRF-synthetic scenes: `transforms_train.json`, `transforms_val.json`, `transforms_test.json`.

Each json has `camera_angle_x` (radians) and frames whose `file_path` ("./train/r_0") names an RGBA PNG
without its extension; poses are camera-to-world in OpenGL axes, as in nerfstudio's
`blender_dataparser.py`. Photos are composited on the training background (black by default, the
trainer's; nerfstudio uses white for these scenes: pass background=(1, 1, 1) to compare with published
numbers), since the scene is rendered over that same background. All photos must be one size.

Split: the scene's own, train = transforms_train.json and test = transforms_test.json (val is not
used), unless a test list or test_every is given: then those pick from the train and test frames.
There are no points: the capture records none and `load_capture` initializes as its `init` says.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SplatforgeError
from .photos import DEFAULT_LONG_SIDE
from .transforms import load_frames, parse_frames, read_json

SPLITS = ("train", "test")


def read_blender_capture(root: Path, downscale: int | None = None, long_side_limit: int = DEFAULT_LONG_SIDE,
                         background: tuple[float, float, float] = (0.0, 0.0, 0.0),
                         max_pixels: int | None = 64_000_000, skip_missing: bool = False):
    """(frames, points, colors, names of the test split) of a Blender scene folder."""
    specs, test_names = [], set()
    for split in SPLITS:
        path = root / f"transforms_{split}.json"
        if not path.is_file():
            if split == "train":
                raise SplatforgeError(f"{root}: no transforms_train.json")
            continue
        meta = read_json(path)
        if "camera_angle_x" not in meta and "fl_x" not in meta:
            raise SplatforgeError(f"{path}: no 'camera_angle_x' (a Blender scene's horizontal field of view)")
        parsed = parse_frames(meta, path, skip_missing, max_pixels)
        if split == "test":
            test_names.update(s.name for s in parsed)
        specs.extend(parsed)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise SplatforgeError(f"{root}: the image {dup!r} is in more than one split")
    frames = load_frames(specs, root, downscale, long_side_limit, background, max_pixels, same_size=True)
    return frames, np.zeros((0, 3)), np.zeros((0, 3), np.uint8), test_names
