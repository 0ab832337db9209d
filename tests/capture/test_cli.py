"""`splatforge train`, `eval` and `render --capture` on a transforms.json and a Blender scene; bad
captures fail with the file named and no output folder."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from splatforge.cli import main
from splatforge.io.ply import read_ply

from .conftest import applied_4x4, write_blender, write_transforms


def test_train_eval_render_on_a_transforms_json(demo_colmap, tmp_path, capsys):
    ns = write_transforms(demo_colmap, tmp_path / "ns")
    out = tmp_path / "run"
    assert main(["train", str(ns / "transforms.json"), "-o", str(out), "--max-steps", "4", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "8 training and 2 test views of 64x48 (transforms), 300 sfm points" in printed
    scene = read_ply(out / "point_cloud.ply")
    # the export is in the json's frame: taken back through applied_transform it sits on COLMAP's points
    from splatforge.io.colmap import read_colmap_model

    points = read_colmap_model(demo_colmap).points
    means = scene.means.double().numpy() @ np.linalg.inv(applied_4x4())[:3, :3].T
    np.testing.assert_allclose(means.mean(0), points.mean(0), atol=0.05 * np.ptp(points, axis=0).max())
    scores = tmp_path / "scores.json"
    assert main(["eval", str(out / "point_cloud.ply"), str(ns), "--json", str(scores)]) == 0
    trained = json.loads((out / "metrics.json").read_text())["test"]
    assert json.loads(scores.read_text())["psnr"] == pytest.approx(trained["psnr"], abs=0.05)
    assert main(["render", str(out / "point_cloud.ply"), "--capture", str(ns), "-o", str(tmp_path / "cams"),
                 "--no-video"]) == 0
    assert len(list((tmp_path / "cams" / "frames").glob("*.png"))) == 10


def test_train_on_a_blender_scene_from_random_points(demo_colmap, tmp_path, capsys):
    bl = write_blender(demo_colmap, tmp_path / "bl")
    out = tmp_path / "run"
    assert main(["train", str(bl), "-o", str(out), "--init", "random", "--max-steps", "3", "--no-progress",
                 "--test-list", str(_lines(tmp_path / "list.txt", ["r_1.png", "train/r_2"]))]) == 0
    printed = capsys.readouterr().out
    assert "8 training and 2 test views of 64x48 (blender)" in printed and "random points" in printed
    assert (out / "point_cloud.ply").is_file()


def _lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("damage", ["nan", "missing image", "empty folder", "bare photos"])
def test_bad_capture_fails_before_any_output(demo_colmap, tmp_path, capsys, damage):
    ns = write_transforms(demo_colmap, tmp_path / "ns")
    if damage == "nan":
        meta = json.loads((ns / "transforms.json").read_text())
        meta["frames"][3]["transform_matrix"][1][1] = float("nan")
        (ns / "transforms.json").write_text(json.dumps(meta))
        message = "frame 3"
    elif damage == "missing image":
        (ns / "images" / "view_004.png").unlink()
        message = "view_004.png"
    elif damage == "empty folder":
        ns = tmp_path / "empty"
        ns.mkdir()
        message = "empty folder"
    else:  # photos without poses: train runs SfM first, which cannot pose two photos
        ns = tmp_path / "photos"
        ns.mkdir()
        for name in sorted(os.listdir(demo_colmap / "images"))[:2]:
            shutil.copy(demo_colmap / "images" / name, ns / name)
        message = "SfM needs at least 3 overlapping photos"
    out = tmp_path / "run"
    assert main(["train", str(ns), "-o", str(out), "--max-steps", "3", "--no-progress"]) != 0
    assert message in capsys.readouterr().err
    assert not out.exists()
