"""ONNX export and ONNX Runtime parity; the predict and export-onnx commands."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from splatforge.errors import SplatforgeError
from splatforge.predict import predict_image
from splatforge.predict.onnx import export_onnx, load_onnx_predictor

from splatforge.cli import main as run

from .conftest import DATA


@pytest.fixture(scope="module")
def small_onnx(small_predictor, tmp_path_factory):
    return export_onnx(small_predictor, tmp_path_factory.mktemp("onnx") / "small.onnx")


def test_onnx_runtime_matches_torch(small_predictor, small_onnx, reference):
    session = load_onnx_predictor(small_onnx)
    assert session.internal_resolution() == 128
    image = torch.from_numpy(reference["network_input"])
    factor = torch.from_numpy(reference["disparity_factor"])
    with torch.no_grad():
        expected = small_predictor(image, factor)
    got = session(image, factor)
    for field in expected._fields:
        assert (getattr(got, field) - getattr(expected, field)).abs().max() <= 1e-4, field
    a = predict_image(reference["image"], small_predictor, focal_length_px=float(reference["f_px"]))
    b = predict_image(reference["image"], session, backend="onnx",
                      focal_length_px=float(reference["f_px"]))
    for field in ("means", "scales", "colors", "opacities"):
        assert (getattr(a, field) - getattr(b, field)).abs().max() <= 1e-4, field
    # And against ml-sharp's final Gaussians.
    assert np.abs(b.means.numpy() - reference["final_mean_vectors"][0]).max() <= 1e-4


def test_fp16_weights_export(small_predictor, small_onnx, tmp_path, reference):
    path = export_onnx(small_predictor, tmp_path / "half.onnx", precision="fp16")
    assert path.stat().st_size < 0.8 * small_onnx.stat().st_size
    pred = predict_image(reference["image"], str(path), backend="onnx",
                         focal_length_px=float(reference["f_px"]))
    assert np.abs(pred.means.numpy() - reference["final_mean_vectors"][0]).max() < 1e-2


def test_onnx_from_another_model_is_refused(tmp_path):
    other = tmp_path / "other.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(torch.nn.Linear(3, 2), (torch.zeros(1, 3),), str(other), dynamo=False)
    with pytest.raises(SplatforgeError, match="not a SHARP model"):
        load_onnx_predictor(other)
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(SplatforgeError, match="not a loadable ONNX model"):
        load_onnx_predictor(tmp_path / "junk.onnx")
    with pytest.raises(SplatforgeError, match="not found"):
        load_onnx_predictor(tmp_path / "none.onnx")


def test_predict_command_on_a_directory_reports_bad_files(tmp_path, capsys):
    images = tmp_path / "in"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((30, 40, 3)) * 255).astype(np.uint8)).save(images / "a.png")
    Image.fromarray((rng.random((30, 40, 3)) * 255).astype(np.uint8)).save(images / "c.jpg")
    (images / "b.jpg").write_text("not an image")
    code = run(["predict", str(images), "-o", str(tmp_path / "out"), "--preset", "small",
                "--checkpoint", str(DATA / "sharp_small_state_dict.pt")])
    out = capsys.readouterr()
    assert code == 2
    assert "1 of 3 inputs failed" in out.err and "b.jpg" in out.err
    assert (tmp_path / "out" / "a.ply").is_file() and (tmp_path / "out" / "c.ply").is_file()


def test_predict_command_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not a photo")
    assert run(["predict", str(tmp_path / "empty"), "-o", str(tmp_path / "o"), "--preset",
                "small", "--seed", "0"]) == 2
    assert "splatforge predict: error: no images in" in capsys.readouterr().err
    assert run(["predict", str(tmp_path / "nope.jpg"), "-o", str(tmp_path / "o"), "--preset",
                "small", "--seed", "0"]) == 2
    assert "splatforge predict: error: input not found" in capsys.readouterr().err


def test_export_command_and_onnx_backend(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    assert run(["export-onnx", "--preset", "small", "--seed", "1", "-o", str(model)]) == 0
    Image.fromarray(np.full((24, 32, 3), 128, np.uint8)).save(tmp_path / "g.png")
    assert run(["predict", str(tmp_path / "g.png"), "-o", str(tmp_path / "out"), "--preset",
                "small", "--seed", "1", "--backend", "onnx", "--onnx-model", str(model)]) == 0
    assert "8,192 Gaussians" in capsys.readouterr().out
    assert (tmp_path / "out" / "g.ply").is_file()


@pytest.mark.parametrize("attention", ["ort", "standard"])
def test_export_command_attention_choice(tmp_path, attention):
    import onnx

    model = tmp_path / "m.onnx"
    assert run(["export-onnx", "--preset", "small", "--seed", "1", "-o", str(model), "--attention", attention]) == 0
    nodes = onnx.load(str(model), load_external_data=False).graph.node
    fused = [n for n in nodes if n.op_type == "MultiHeadAttention"]
    if attention == "ort":
        assert fused and all(n.domain == "com.microsoft" for n in fused)
    else:  # portable: the default ONNX domain only
        assert not fused and all(n.domain in ("", "ai.onnx") for n in nodes)


def test_predict_command_renders_videos(tmp_path):
    import imageio.v3 as iio

    Image.fromarray(np.full((24, 32, 3), 200, np.uint8)).save(tmp_path / "g.png")
    assert run(["predict", str(tmp_path / "g.png"), "-o", str(tmp_path / "out"), "--preset",
                "small", "--seed", "2", "--render", "--render-steps", "4"]) == 0
    frames = iio.imread(tmp_path / "out" / "g.mp4")
    depth = iio.imread(tmp_path / "out" / "g.depth.mp4")
    assert frames.shape[0] == 4 and depth.shape[0] == 4
    assert frames.shape[1:3] == (24, 32)


def test_first_trajectory_frame_is_the_input_view():
    """A wall of Gaussians carrying an image's pixels, 3 m ahead: frame 0 of the trajectory is
    the original camera, so it reproduces the image; later frames move the camera."""
    from splatforge.predict import Prediction
    from splatforge.predict.render import (
        TrajectoryParams,
        render_trajectory_frames,
        trajectory_viewmats,
    )

    h, w, f, z = 24, 32, 30.0, 3.0
    v, u = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    means = torch.stack([(u - w / 2) * z / f, (v - h / 2) * z / f, torch.full_like(u, z)], -1)
    colors = torch.stack([u / w, v / h, 0.5 + 0.0 * u], -1)
    n = h * w
    pred = Prediction(means=means.reshape(n, 3), scales=torch.full((n, 3), 0.3 * z / f),
                      quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
                      colors=colors.reshape(n, 3), opacities=torch.full((n,), 0.99),
                      focal_length_px=f, image_size=(w, h), color_space="sRGB")
    frames, depths = render_trajectory_frames(pred, TrajectoryParams(num_steps=5))
    target = colors.numpy()
    inner = (slice(3, -3), slice(3, -3))
    assert np.abs(frames[0][inner] - target[inner]).mean() < 0.01
    assert abs(float(np.median(depths[0])) - z) < 0.05
    views = trajectory_viewmats(pred, TrajectoryParams(num_steps=5))
    torch.testing.assert_close(views[0], torch.eye(4))
    assert views[1][0, 3] < -0.1  # the eye moves right (+x), so the world moves left
    assert np.abs(frames[1] - frames[0]).mean() > 0.005
