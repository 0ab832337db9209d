"""generate end to end on the mini network: the Python API, the PLY, the turntable, the command."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from splatforge.cli import main
from splatforge.core.sh import C0
from splatforge.errors import SplatforgeError
from splatforge.generate import Generation, TurntableParams, generate_image
from splatforge.generate.api import MIN_OPACITY, run_network
from splatforge.generate.render import turntable_frames
from splatforge.io.ply import read_ply

from .conftest import object_views


def _save_views(folder, views) -> list:
    paths = []
    for i, view in enumerate(views):
        path = folder / f"view{i}.png"
        Image.fromarray((view * 255 + 0.5).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def test_views_become_lgm_gaussians_and_faint_ones_are_dropped(mini_generator):
    views = object_views()
    raw = run_network(mini_generator, views)
    result = generate_image(None, mini_generator, views=views)
    kept = raw[raw[:, 3] >= MIN_OPACITY]
    assert 0 < result.num_gaussians == len(kept) <= 4 * 16 * 16
    torch.testing.assert_close(result.means, kept[:, :3])
    torch.testing.assert_close(result.colors, kept[:, 11:])
    assert result.picture is None and result.views.shape == (4, 48, 48, 3)


def test_the_ply_holds_lgm_values_in_the_inria_conventions(mini_generator, tmp_path):
    result = generate_image(None, mini_generator, views=object_views())
    path = result.save_ply(tmp_path / "object.ply")
    g = read_ply(path)
    assert len(g) == result.num_gaussians and g.shN.shape[1] == 0
    torch.testing.assert_close(g.means, result.means)  # LGM's frame, unchanged (y up)
    torch.testing.assert_close(torch.sigmoid(g.opacities), result.opacities, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(torch.exp(g.scales), result.scales, atol=1e-7, rtol=1e-5)
    torch.testing.assert_close(0.5 + C0 * g.sh0[:, 0], result.colors, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(g.quats, result.quats)


def test_the_saved_object_opens_in_splatforge_view(mini_generator, tmp_path):
    from splatforge.io.scene import load_scene

    path = generate_image(None, mini_generator, views=object_views()).save_ply(tmp_path / "object.ply")
    scene = load_scene(path)  # what `splatforge view` reads
    assert len(scene) > 0


def _one_gaussian(x: float, y: float, z: float) -> Generation:
    return Generation(means=torch.tensor([[x, y, z]]), opacities=torch.tensor([0.99]),
                      scales=torch.full((1, 3), 0.05), quats=torch.tensor([[1.0, 0, 0, 0]]),
                      colors=torch.tensor([[1.0, 0.0, 0.0]]), views=np.zeros((4, 8, 8, 3), np.float32))


def _red_centre(frame: np.ndarray) -> tuple[float, float] | None:
    red = (frame[..., 0] > 0.6) & (frame[..., 1] < 0.4)
    if not red.any():
        return None
    rows, cols = np.nonzero(red)
    return float(cols.mean()), float(rows.mean())


def test_the_turntable_follows_lgm_cameras_y_up_azimuth_from_z_to_x():
    params = TurntableParams(num_frames=4, size=64)
    frames = list(turntable_frames(_one_gaussian(0.5, 0.3, 0.0), params))  # right of the front view, above
    assert len(frames) == 4 and frames[0].shape == (64, 64, 3)
    assert np.allclose(frames[0][0, 0], 1.0)  # white background, as LGM renders
    x0, y0 = _red_centre(frames[0])  # azimuth 0: camera on +z, +x to the right, +y up
    assert x0 > 40 and y0 < 28
    x90, _ = _red_centre(frames[1])  # azimuth 90: camera on +x, the Gaussian straight ahead
    assert abs(x90 - 31.5) < 2
    x180, _ = _red_centre(frames[2])  # azimuth 180: seen from behind, on the left
    assert x180 < 24
    focal = 32 / math.tan(math.radians(49.1) / 2)
    assert x0 - 32 == pytest.approx(focal * 0.5 / 1.5, abs=1.5)


def test_generate_command_with_views_writes_ply_and_video(mini_checkpoint, tmp_path, capsys):
    paths = _save_views(tmp_path, object_views())
    out, video = tmp_path / "out.ply", tmp_path / "out.mp4"
    status = main(["generate", "--views", ",".join(map(str, paths)), "-o", str(out), "--preset", "mini",
                   "--checkpoint", str(mini_checkpoint), "--video", str(video), "--video-frames", "3",
                   "--video-size", "32"])
    assert status == 0
    assert "Gaussians" in capsys.readouterr().out
    assert len(read_ply(out)) > 0
    assert video.stat().st_size > 0


def test_missing_diffusion_weights_point_to_views(mini_checkpoint, tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    picture = np.zeros((64, 64, 4), dtype=np.uint8)
    picture[16:48, 16:48] = (200, 40, 40, 255)
    Image.fromarray(picture).save(tmp_path / "object.png")
    out = tmp_path / "out.ply"
    status = main(["generate", str(tmp_path / "object.png"), "-o", str(out), "--preset", "mini",
                   "--checkpoint", str(mini_checkpoint)])
    err = capsys.readouterr().err
    assert status == 2
    assert "not in the Hugging Face cache" in err and "--views FRONT,RIGHT,BACK,LEFT" in err
    assert not out.exists()


@pytest.mark.parametrize("case, message", [
    ("empty-alpha", "shows no object"),
    ("sizes", "the four views must have the same size"),
    ("preset", "it is a 'mini' checkpoint: pass --preset mini"),
    ("no-input", "give a picture of the object"),
])
def test_bad_input_is_a_clear_error_and_writes_nothing(case, message, mini_checkpoint, tmp_path, capsys):
    out = tmp_path / "out.ply"
    args = ["generate", "-o", str(out), "--preset", "mini", "--checkpoint", str(mini_checkpoint)]
    if case == "empty-alpha":
        Image.fromarray(np.zeros((64, 64, 4), dtype=np.uint8)).save(tmp_path / "empty.png")
        args.insert(1, str(tmp_path / "empty.png"))
    elif case == "sizes":
        views = [*object_views(48)[:3], object_views(64)[0]]
        args += ["--views", ",".join(map(str, _save_views(tmp_path, views)))]
    elif case == "preset":
        args[args.index("mini")] = "tiny"
        args += ["--views", ",".join(map(str, _save_views(tmp_path, object_views())))]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.glob("out*")) == []


def test_command_line_choices_match_the_library():
    from typing import get_args

    from splatforge.generate import PRESETS
    from splatforge.generate.api import PRECISIONS
    from splatforge.generate_cli import Precision, Preset

    assert get_args(Preset) == PRESETS
    assert get_args(Precision) == PRECISIONS


def test_bf16_runs_in_bfloat16_and_stays_close_to_fp32(mini_generator):
    views = object_views()
    full = run_network(mini_generator, views)
    half = run_network(mini_generator, views, precision="bf16")
    difference = (full - half).abs()
    assert difference.max() > 0  # it did run in bfloat16
    assert difference[:, 0:3].max() < 0.05 and difference[:, 11:].max() < 0.05
    with pytest.raises(SplatforgeError, match="precision must be one of fp32, bf16"):
        run_network(mini_generator, views, precision="fp16")
