"""predict FOLDER: every image gets its own output name, decided by its own folder alone."""

from pathlib import Path

import pytest

from splatforge.errors import SplatforgeError
from splatforge.predict.outputs import output_paths


def names(images, root="in"):
    paths = output_paths([Path(root) / i for i in images], root, "out")
    return [p.relative_to("out").as_posix() for p in paths]


def test_plain_names_keep_the_stem_and_the_tree():
    assert names(["photo.jpg", "sub/other.png"]) == ["photo.ply", "sub/other.ply"]


def test_same_name_in_two_folders():
    assert names(["a/x.jpg", "b/x.jpg"]) == ["a/x.ply", "b/x.ply"]


def test_same_stem_in_one_folder_keeps_the_extension():
    assert names(["x.jpg", "x.png", "y.jpg"]) == ["x.jpg.ply", "x.png.ply", "y.ply"]
    assert names(["x.png", "y.jpg", "x.jpg"]) == ["x.png.ply", "y.ply", "x.jpg.ply"]  # order does not matter


def test_names_differing_only_in_case_stay_apart():
    out = names(["x.jpg", "X.JPG", "a.jpg", "A.png"])
    assert len({n.casefold() for n in out}) == 4
    assert out[2:] == ["a.jpg.ply", "A.png.ply"]


def test_an_extension_kept_cannot_meet_another_stem():
    out = names(["x.jpg", "x.png", "x.jpg.png"])
    assert len({n.casefold() for n in out}) == 3
    assert all(n.endswith(".ply") for n in out)


def test_other_outputs_of_an_image_stay_distinct():
    videos = [p.with_suffix(".mp4") for p in output_paths([Path("x.jpg"), Path("x.png")], ".", "out")]
    assert videos[0] != videos[1]


def test_images_outside_the_root_or_listed_twice_are_refused():
    with pytest.raises(SplatforgeError, match="not inside"):
        output_paths([Path("elsewhere/x.jpg")], "in", "out")
    with pytest.raises(SplatforgeError, match="twice"):
        output_paths([Path("in/x.jpg"), Path("in/x.jpg")], "in", "out")


def test_predict_command_writes_one_scene_per_image(tmp_path):
    import numpy as np
    from PIL import Image

    from splatforge.cli import main as run
    from splatforge.io.ply_format import read_ply_elements

    from .conftest import DATA

    images = tmp_path / "in"
    sizes = {"a/x.png": (40, 30), "b/x.png": (44, 30), "x.jpg": (48, 30), "x.png": (52, 30)}
    rng = np.random.default_rng(0)
    for name, (w, h) in sizes.items():
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(images / name)
    assert run(["predict", str(images), "-o", str(tmp_path / "out"), "--preset", "small",
                "--checkpoint", str(DATA / "sharp_small_state_dict.pt")]) == 0
    expected = {"a/x.png": "a/x.ply", "b/x.png": "b/x.ply", "x.jpg": "x.jpg.ply", "x.png": "x.png.ply"}
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.ply"))
    assert written == sorted(expected.values())
    for name, out in expected.items():  # each file holds its own image's prediction
        size = read_ply_elements(tmp_path / "out" / out).elements["image_size"]  # two rows: width, height
        assert tuple(int(row[0]) for row in size) == sizes[name]
