"""`splatforge demo`, `train`, `render` and `eval` end to end on tiny settings."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("pycolmap")

from splatforge.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    code = main(["demo", "-o", str(out), "--views", "12", "--size", "48", "--max-seconds", "20", "--max-steps", "30",
                 "--orbit-frames", "4", "--quiet"])
    assert code == 0
    return out


def test_demo_writes_capture_scene_video_plots_and_metrics(demo, capsys):
    for rel in ("capture/images", "capture/sparse/0", "train/point_cloud.ply", "train/metrics.json",
                "train/plots/training.png", "orbit.mp4"):
        assert (demo / rel).exists(), rel
    metrics = json.loads((demo / "train" / "metrics.json").read_text())
    assert metrics["steps"] == 30 and metrics["test"]["psnr"] > 10
    assert (demo / "orbit.mp4").stat().st_size > 1000


def test_render_capture_cameras_and_orbit(demo, tmp_path, capsys):
    scene = demo / "train" / "point_cloud.ply"
    assert main(["render", str(scene), "--capture", str(demo / "capture"), "-o", str(tmp_path / "cams"),
                 "--no-video"]) == 0
    frames = sorted((tmp_path / "cams" / "frames").glob("*.png"))
    assert len(frames) == 12
    assert main(["render", str(scene), "--orbit", "3", "--width", "40", "--height", "30",
                 "-o", str(tmp_path / "orbit")]) == 0
    from PIL import Image

    frame = np.asarray(Image.open(tmp_path / "orbit" / "frames" / "view_000.png"))
    assert frame.shape == (30, 40, 3) and frame.max() > 30  # the scene is in view
    assert (tmp_path / "orbit" / "video.mp4").stat().st_size > 500


def test_eval_scores_the_exported_scene_like_the_trainer(demo, tmp_path, capsys):
    out = tmp_path / "scores.json"
    assert main(["eval", str(demo / "train" / "point_cloud.ply"), str(demo / "capture"), "--json", str(out)]) == 0
    scores = json.loads(out.read_text())
    trained = json.loads((demo / "train" / "metrics.json").read_text())["test"]
    assert scores["psnr"] == pytest.approx(trained["psnr"], abs=0.05)


def test_train_cli_and_its_errors(demo, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(demo / "capture"), "-o", str(out), "--max-steps", "5", "--no-progress"]) == 0
    assert (out / "point_cloud.ply").is_file()
    assert main(["train", str(demo / "capture"), "-o", str(out), "--max-steps", "5", "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "nowhere"), "-o", str(tmp_path / "x")]) == 2
    assert main(["eval", str(tmp_path / "none.ply"), str(demo / "capture")]) == 2


def test_train_cli_with_modules_and_their_options(demo, tmp_path, capsys):
    out = tmp_path / "mods"
    assert main(["train", str(demo / "capture"), "-o", str(out), "--max-steps", "4", "--no-progress",
                 "--modules", "background,bilateral", "--module-option", "bilateral.grid_width=4",
                 "--module-option", "bilateral.grid_height=4", "--module-option", "background.lr=0.01"]) == 0
    config = json.loads((out / "config.json").read_text())["train"]
    assert config["modules"] == "background,bilateral"
    assert config["module_options"]["bilateral"] == {"grid_width": 4, "grid_height": 4}
    assert (out / "modules" / "background").exists()
    assert main(["train", str(demo / "capture"), "-o", str(tmp_path / "bad"), "--modules", "pose",
                 "--module-option", "nonsense"]) == 2
    assert "MODULE.KEY=VALUE" in capsys.readouterr().err


def test_capture_option_defaults_are_the_librarys():
    """train, eval and render take their capture defaults from splatforge.capture.CaptureOptions, whose
    defaults load_capture's are too; train offers every source of starting points but 'none'."""
    import inspect
    from dataclasses import asdict, fields

    from splatforge.capture import CaptureOptions, load_capture
    from splatforge.capture.options import INIT_CHOICES
    from splatforge.cli import parse_command_line

    library = CaptureOptions()
    params = inspect.signature(load_capture).parameters
    assert {f.name: params[f.name].default for f in fields(CaptureOptions)} == asdict(library)
    _, train = parse_command_line(["train", "CAPTURE"])
    _, evaluate = parse_command_line(["eval", "scene.ply", "CAPTURE"])
    _, render = parse_command_line(["render", "scene.ply"])
    for opts in (train.capture, evaluate.capture):
        # where starting points come from is train's alone (eval and render start from a scene)
        assert asdict(opts) == {k: v for k, v in asdict(library).items() if k not in ("init", "num_random_points")}
    assert train.init == library.init and train.num_random_points == library.num_random_points
    assert render.downscale == library.downscale
    for choice in INIT_CHOICES:
        if choice == "none":
            with pytest.raises(SystemExit):
                parse_command_line(["train", "CAPTURE", "--init", choice])
        else:
            assert parse_command_line(["train", "CAPTURE", "--init", choice])[1].init == choice


def test_train_options_are_typed_and_choices_are_checked_when_parsing(capsys):
    from splatforge.cli import parse_command_line

    _, opts = parse_command_line(["train", "CAPTURE", "-o", "out/x", "--strategy", "mcmc", "--background", "1", "0.5",
                                  "0", "--backend", "cpu", "--max-seconds", "60", "--no-progress", "--downscale", "4",
                                  "--test-every", "0", "--module-option", "pose.lr=1e-3"])
    assert str(opts.data) == "CAPTURE" and str(opts.output) == "out/x"
    assert (opts.config.strategy, opts.config.background, opts.config.backend) == ("mcmc", (1.0, 0.5, 0.0), "cpu")
    assert opts.run.max_seconds == 60.0 and opts.run.progress is False
    assert (opts.capture.downscale, opts.capture.test_every) == (4, 0)
    assert opts.module_option == ("pose.lr=1e-3",)
    for bad in (["--strategy", "fast"], ["--backend", "metal"], ["--background", "1,1,1"]):
        with pytest.raises(SystemExit) as exit_info:
            parse_command_line(["train", "CAPTURE", *bad])
        assert exit_info.value.code == 2
    capsys.readouterr()
