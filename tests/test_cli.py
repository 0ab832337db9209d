"""The command line: each command runs end to end and user errors exit non-zero without a traceback."""

from __future__ import annotations

import numpy as np
import pytest

from splatforge.cli import main


def write_capture(path, n=400, seed=0):
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n, 3)).astype(np.float32) * 0.5 + np.array([0, 0, 4], np.float32)
    colors = rng.integers(0, 256, size=(n, 3), dtype=np.uint8)
    viewmats = np.stack([np.eye(4, dtype=np.float32)] * 2)
    viewmats[1, 0, 3] = 0.2
    ks = np.stack([np.array([[50, 0, 32], [0, 50, 24], [0, 0, 1]], np.float32)] * 2)
    np.savez(path, means3d=points, colors=colors, viewmats=viewmats, Ks=ks, width=64, height=48)
    return path


def test_render_writes_one_png_per_camera_and_prints_timing(tmp_path, capsys):
    capture = write_capture(tmp_path / "cap.npz")
    assert main(["render", str(capture), "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "400 Gaussians" in out and "ms per view" in out
    from PIL import Image

    images = sorted((tmp_path / "out" / "frames").glob("view_*.png"))
    assert len(images) == 2
    pixels = np.asarray(Image.open(images[0]))
    assert pixels.shape == (48, 64, 3) and pixels.max() > 50


@pytest.mark.parametrize("content", [b"", b"not a zip at all", None])
def test_render_bad_capture_is_a_clear_error(tmp_path, capsys, content):
    path = tmp_path / "bad.npz"
    if content is None:
        np.savez(path, means3d=np.zeros((3, 3), np.float32))  # keys missing
    else:
        path.write_bytes(content)
    assert main(["render", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "bad.npz" in err and "Traceback" not in err


def test_render_missing_file(tmp_path, capsys):
    assert main(["render", str(tmp_path / "nope.npz")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_info_describes_a_ply(tmp_path, capsys):
    import torch

    from splatforge.core.gaussians import Gaussians
    from splatforge.io.ply import write_ply

    g = Gaussians.from_points(torch.rand(50, 3), torch.rand(50, 3), sh_degree=2, scale=0.01)
    write_ply(tmp_path / "s.ply", g)
    assert main(["info", str(tmp_path / "s.ply")]) == 0
    out = capsys.readouterr().out
    assert "50" in out and "2" in out


def test_info_on_a_truncated_ply(tmp_path, capsys):
    import torch

    from splatforge.core.gaussians import Gaussians
    from splatforge.io.ply import write_ply

    write_ply(tmp_path / "s.ply", Gaussians.from_points(torch.rand(50, 3), sh_degree=0, scale=0.01))
    data = (tmp_path / "s.ply").read_bytes()
    (tmp_path / "t.ply").write_bytes(data[: len(data) - 100])
    assert main(["info", str(tmp_path / "t.ply")]) == 2
    err = capsys.readouterr().err
    assert "t.ply" in err and "Traceback" not in err
