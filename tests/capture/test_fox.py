"""The fox in tests/data/fox: a real phone capture in instant-ngp's transforms.json layout (intrinsics at
the top level, bare `k1 k2 p1 p2` keys and no `camera_model`, OpenGL camera-to-world matrices, no
points). NVIDIA Source Code License-NC: test data only (tests/data/fox/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from splatforge.capture import load_capture

from .test_sfm_data import fox_cameras

FOX = Path(__file__).resolve().parents[1] / "data" / "fox"


def test_the_fox_reads_with_its_cameras_distortion_and_split():
    meta = json.loads((FOX / "transforms.json").read_text())
    capture = load_capture(FOX, init="none", normalize=False)
    assert capture.format == "transforms"
    assert (len(capture.train), len(capture.test)) == (43, 7)  # every 8th of 50 held out
    names = sorted(f["file_path"] for f in meta["frames"])
    assert [v.name for v in capture.test] == names[::8]

    view = capture.train[0]
    assert view.image.shape == (512, 288, 3)  # portrait, at the size the json states (long side <= 1000)
    # pinhole intrinsics of the undistorted photo: the json's focal length and centre
    np.testing.assert_allclose(view.K[[0, 1], [0, 1]], [meta["fl_x"], meta["fl_y"]], rtol=0.02)
    np.testing.assert_allclose(view.K[:2, 2], [meta["cx"], meta["cy"]], atol=3.0)
    # k1 = 0.058 bends the photo: what trains is the remapped photo, not the file as it is
    raw = np.asarray(Image.open(FOX / view.name), dtype=np.float32) / 255
    diff = np.abs(view.image - raw).mean()
    assert 0.005 < diff < 0.2, diff

    # the cameras sit where the json puts them (OpenGL camera-to-world -> OpenCV world-to-camera)
    views = capture.train[:5] + capture.test[:2]
    expected = fox_cameras([Path(v.name).name for v in views])
    for view, viewmat in zip(views, expected):
        np.testing.assert_allclose(np.linalg.inv(view.viewmat), np.linalg.inv(viewmat), atol=1e-6)  # camera-to-world
