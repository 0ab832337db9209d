"""The command line: each command runs end to end and user errors exit non-zero without a traceback."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

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
    assert main(["render", str(capture), "-o", str(tmp_path / "out"), "--no-video"]) == 0
    out = capsys.readouterr().out
    timing = re.search(r"^400 Gaussians, 2 views of 64x48: ([0-9.]+) ms per view \(auto backend\)$", out, re.M)
    assert timing is not None, out
    assert float(timing.group(1)) > 0
    images = sorted((tmp_path / "out" / "frames").glob("view_*.png"))
    assert len(images) == 2 and not (tmp_path / "out" / "video.mp4").exists()
    pixels = np.asarray(Image.open(images[0]))
    assert pixels.shape == (48, 64, 3) and pixels.max() > 50


def test_render_background_takes_three_numbers(tmp_path, capsys):
    """Vectors are given as separate numbers (`--background 1 1 1`), as in train and eval."""
    capture = write_capture(tmp_path / "cap.npz")
    black, tinted = tmp_path / "black", tmp_path / "tinted"
    assert main(["render", str(capture), "-o", str(black), "--no-video"]) == 0
    assert main(["render", str(capture), "-o", str(tinted), "--no-video", "--background", "1", "0.5", "0"]) == 0
    dark = np.asarray(Image.open(black / "frames" / "view_000.png")).astype(int)
    light = np.asarray(Image.open(tinted / "frames" / "view_000.png")).astype(int)
    # the background adds (1 - alpha) x its colour to a pixel: red in full, green half, blue nothing
    added = light - dark
    assert added[..., 0].min() >= 0 and added[..., 0].max() > 200
    assert np.abs(added[..., 1] - added[..., 0] / 2).max() <= 1
    assert np.abs(added[..., 2]).max() <= 1
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["render", str(capture), "-o", str(tinted), "--background", "1,1,1"])
    assert exit_info.value.code == 2


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
    err = capsys.readouterr().err
    assert err.startswith("splatforge render: error: ") and "nope.npz" in err and "no such file" in err


def test_info_describes_a_ply(tmp_path, capsys):
    import torch

    from splatforge.core.gaussians import Gaussians
    from splatforge.io.ply import write_ply

    means = torch.rand(57, 3) * torch.tensor([2.0, 4.0, 8.0]) - 1.0
    means[0] = torch.tensor([-1.0, -1.0, -1.0])
    means[1] = torch.tensor([1.0, 3.0, 7.0])
    g = Gaussians.from_points(means, torch.rand(57, 3), sh_degree=2, scale=0.01)
    write_ply(tmp_path / "s.ply", g)
    assert main(["info", str(tmp_path / "s.ply")]) == 0
    lines = capsys.readouterr().out.splitlines()
    size = (tmp_path / "s.ply").stat().st_size
    assert lines[0] == f"{tmp_path / 's.ply'}: {size / 1e6:.1f} MB ({size:,} bytes), binary_little_endian"
    assert lines[1].split() == ["gaussians", "57", "(SH", "degree", "2,", "no", "normals)"]
    assert lines[2].split() == ["bounds", "x", "-1", "..", "1", "y", "-1", "..", "3", "z", "-1", "..", "7"]


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


def test_unknown_or_missing_command_exits_2_with_the_command_list(capsys):
    assert main(["no-such-command"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'no-such-command'" in err and "\n  train " in err
    assert main([]) == 2
    assert "a command is required" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert re.search(r"^  info +describe a splat PLY", capsys.readouterr().out, re.M)


def _modules_loaded_by(argv: list[str]) -> set[str]:
    """The heavy modules in sys.modules after `splatforge ARGV` runs in a fresh interpreter."""
    code = ("import sys\nfrom splatforge.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print(' '.join(m for m in ('torch', 'numba', 'fastapi', 'uvicorn', 'viser', 'numpy', 'PIL', 'pydantic')"
            " if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split("\n")[-2].split())


def test_light_commands_do_not_import_torch_or_numba(tmp_path):
    from splatforge.io.ply_format import write_ply_elements  # noqa: F401  (a PLY without torch)

    g_ply = tmp_path / "s.ply"
    done = subprocess.run([sys.executable, "-c", (
        "import sys, torch\nfrom splatforge.core.gaussians import Gaussians\nfrom splatforge.io.ply import write_ply\n"
        "write_ply(sys.argv[1], Gaussians.from_points(torch.rand(5, 3), sh_degree=0, scale=0.01))"), str(g_ply)],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert _modules_loaded_by(["--help"]) == set()
    heavy = {"torch", "numba", "fastapi", "uvicorn", "viser"}
    assert not heavy & _modules_loaded_by(["info", str(g_ply)])
    assert not heavy & _modules_loaded_by(["convert", "--help"])
    assert not heavy & _modules_loaded_by(["filter", "--help"])  # its options are splatforge.io.filter_spec's
    # serve's and worker's defaults come from splatforge.serve.settings, which needs none of these
    assert _modules_loaded_by(["serve", "--help"]) == set()
    assert _modules_loaded_by(["worker", "--help"]) == set()
    # and the capture options' defaults from splatforge.capture.options
    assert _modules_loaded_by(["eval", "--help"]) == set()
    assert _modules_loaded_by(["render", "--help"]) == set()
    assert {"torch", "numpy"} <= _modules_loaded_by(["train", "--help"])  # the check sees them when they are there


def test_import_splatforge_is_light_and_rasterization_loads_on_use():
    code = ("import sys, splatforge\nassert 'torch' not in sys.modules and 'numba' not in sys.modules\n"
            "from splatforge.raster import rasterization\nassert splatforge.rasterization is rasterization\n"
            "assert 'rasterization' in dir(splatforge)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
