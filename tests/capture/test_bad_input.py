"""Bad captures get a SplatforgeError naming the file or frame, before anything is written."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from splatforge.capture import load_capture
from splatforge.errors import SplatforgeError

from .conftest import write_blender, write_transforms


def _edit_json(path, change):
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def test_empty_folder_one_photo_and_bare_photos(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SplatforgeError, match="empty folder"):
        load_capture(tmp_path / "empty")
    (tmp_path / "one").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "one" / "a.jpg")
    with pytest.raises(SplatforgeError, match=r"1 photo but no camera poses.*splatforge capture"):
        load_capture(tmp_path / "one")
    (tmp_path / "many" / "images").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / "many" / "images" / f"{i}.png")
    with pytest.raises(SplatforgeError, match=r"3 photos but no camera poses.*splatforge capture"):
        load_capture(tmp_path / "many")
    with pytest.raises(SplatforgeError, match="does not exist"):
        load_capture(tmp_path / "nowhere")


def test_a_capture_of_one_posed_photo(demo_colmap, tmp_path):
    ns = write_transforms(demo_colmap, tmp_path / "ns")
    _edit_json(ns / "transforms.json", lambda m: m.update(frames=m["frames"][:1]))
    with pytest.raises(SplatforgeError, match="at least 2 posed photos"):
        load_capture(ns)


@pytest.mark.parametrize("damage", ["truncated", "not an image", "empty"])
def test_unreadable_photos_are_named(demo_colmap, tmp_path, damage):
    for kind in ("colmap", "transforms"):
        root = tmp_path / kind
        if kind == "colmap":
            shutil.copytree(demo_colmap, root)
            photo = root / "images" / "view_003.png"
        else:
            write_transforms(demo_colmap, root)
            photo = root / "images" / "view_003.png"
        data = photo.read_bytes()
        photo.write_bytes({"truncated": data[: len(data) // 2], "not an image": b"hello", "empty": b""}[damage])
        with pytest.raises(SplatforgeError, match="view_003.png"):
            load_capture(root)
        assert not (root / "images_1_cache").exists()


@pytest.mark.parametrize("change, message", [
    (lambda m: m["frames"][2].pop("transform_matrix"), r"frame 2 \(images/view_002.png\): no 'transform_matrix'"),
    (lambda m: m.pop("fl_x") and m.pop("fl_y"), r"frame 0 .*no focal length"),
    (lambda m: m["frames"][1]["transform_matrix"][0].__setitem__(3, float("nan")), r"frame 1 .*NaN"),
    (lambda m: m["frames"][4].__setitem__("transform_matrix", np.zeros((4, 4)).tolist()), r"frame 4 .*singular"),
    (lambda m: m["frames"][4]["transform_matrix"][0].__setitem__(0, 3.0), r"frame 4 .*not a rigid"),
    (lambda m: m.__setitem__("camera_model", "EQUIRECTANGULAR"), r"EQUIRECTANGULAR.*not supported"),
    (lambda m: m.__setitem__("frames", []), "no frames"),
    (lambda m: m["frames"][0].pop("file_path"), r"frame 0 has no 'file_path'"),
    (lambda m: m.__setitem__("fl_x", "wide"), r"'fl_x' must be a number"),
    (lambda m: m.__setitem__("ply_file_path", "gone.ply"), r"gone.ply.*does not exist"),
])
def test_bad_transforms_json_names_the_frame(demo_colmap, tmp_path, change, message):
    ns = write_transforms(demo_colmap, tmp_path / "ns")
    _edit_json(ns / "transforms.json", change)
    with pytest.raises(SplatforgeError, match=message):
        load_capture(ns)


def test_not_json(demo_colmap, tmp_path):
    ns = write_transforms(demo_colmap, tmp_path / "ns")
    (ns / "transforms.json").write_text("{ frames: ")
    with pytest.raises(SplatforgeError, match="transforms.json is not valid JSON"):
        load_capture(ns)


def test_missing_image_is_an_error_unless_skipped(demo_colmap, tmp_path, capsys):
    ns = write_transforms(demo_colmap, tmp_path / "ns")
    (ns / "images" / "view_006.png").unlink()
    with pytest.raises(SplatforgeError, match=r"frame 6 \(images/view_006.png\).*missing.*--skip-missing"):
        load_capture(ns)
    cap = load_capture(ns, skip_missing=True)
    assert len(cap.train) + len(cap.test) == 9
    assert "images/view_006.png" not in [v.name for v in cap.train + cap.test]
    assert "skipped 1 frame(s) whose image file is missing" in capsys.readouterr().out


def test_blender_photos_of_different_sizes(demo_colmap, tmp_path):
    bl = write_blender(demo_colmap, tmp_path / "bl")
    Image.new("RGBA", (32, 24)).save(bl / "train" / "r_3.png")
    with pytest.raises(SplatforgeError, match=r"r_3.png is 32x24 but .* must all be one size"):
        load_capture(bl, init="none")


def test_photo_size_differs_from_the_json(demo_colmap, tmp_path):
    ns = write_transforms(demo_colmap, tmp_path / "ns")
    Image.new("RGB", (48, 64)).save(ns / "images" / "view_002.png")  # portrait where the json says landscape
    with pytest.raises(SplatforgeError, match=r"view_002.png is 48x64 but its frame says 64x48.*EXIF rotation"):
        load_capture(ns)
