"""`splatforge train PHOTOS -o OUT`: structure from motion runs first, into OUT/capture, and the
run trains on it; a second run with the same photos reuses that capture."""

from __future__ import annotations

import json
import shutil

import pytest

from .test_sfm_data import FOX, copy_photos, fox_names

pytest.importorskip("pycolmap")


def test_train_on_a_folder_of_photos_runs_sfm_first_and_reuses_it(tmp_path, capsys):
    from splatforge.cli import main

    names = fox_names()[::4]  # 13 frames all around: SfM poses all of them in ~12 s
    photos = copy_photos(tmp_path / "photos", names, FOX)
    out = tmp_path / "run"
    args = ["train", str(photos), "-o", str(out), "--max-steps", "3", "--sh-degree", "0", "--no-progress",
            "--no-renders"]
    assert main(args) == 0
    report = json.loads((out / "capture" / "sfm_report.json").read_text())
    assert report["registered"] == names
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3
    assert (out / "point_cloud.ply").stat().st_size > 0
    first = capsys.readouterr().out
    assert "registered" in first

    model = out / "capture" / "sparse" / "0" / "cameras.bin"
    before = model.stat().st_mtime_ns
    shutil.rmtree(out / "ckpts")  # a new run in the same folder (its capture stays)
    assert main(args) == 0
    assert model.stat().st_mtime_ns == before  # the capture was reused, not made again
