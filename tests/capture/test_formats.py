"""The same scene loads identically from COLMAP, transforms.json and Blender; training and export work
from each, and exports come out in each capture's own frame."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from splatforge.capture import detect_format, load_capture, random_points_in_view_volume
from splatforge.io.colmap import read_colmap_model
from splatforge.io.ply import read_ply
from splatforge.train.trainer import TrainConfig, Trainer, TrainResult, export_ply

from .conftest import APPLIED, applied_4x4, write_blender, write_transforms


def _all_views(cap):
    return sorted(cap.train + cap.test, key=lambda v: v.name)


def _pixels(view, points):  # [N, 2] pixel coordinates of points (normalized frame) in a view
    cam = points @ view.viewmat[:3, :3].T + view.viewmat[:3, 3]
    uv = cam @ view.K.T
    return uv[:, :2] / uv[:, 2:3]


def test_transforms_json_loads_like_colmap_in_its_own_frame(demo_colmap, tmp_path):
    ns = write_transforms(demo_colmap, tmp_path / "ns")
    assert detect_format(ns) == ("transforms", ns / "transforms.json")
    col, js = load_capture(demo_colmap), load_capture(ns)
    assert js.format == "transforms" and js.points_source == "sfm"
    assert [v.name for v in js.test] == [f"images/{v.name}" for v in col.test]
    for a, b in zip(_all_views(col), _all_views(js)):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_allclose(a.K, b.K, atol=1e-9)
    # the json's frame is nerfstudio's applied_transform of COLMAP's: cameras and points map back exactly
    np.testing.assert_allclose(js.model_viewmats() @ applied_4x4(), col.model_viewmats(), atol=1e-9)
    np.testing.assert_allclose(js.source_from_capture, np.linalg.inv(applied_4x4()), atol=1e-12)
    back = js.points_capture_frame() @ js.source_from_capture[:3, :3].T
    np.testing.assert_allclose(back, col.points_capture_frame(), atol=1e-5)  # the PLY is float32
    # every point lands on the same pixel in every view, whichever format it was loaded from
    for a, b in zip(_all_views(col), _all_views(js)):
        np.testing.assert_allclose(_pixels(b, js.points), _pixels(a, col.points), atol=1e-3)


def test_blender_loads_like_colmap_with_its_own_split(demo_colmap, tmp_path):
    bl = write_blender(demo_colmap, tmp_path / "blender")
    assert detect_format(bl) == ("blender", bl)
    assert detect_format(bl / "transforms_test.json") == ("blender", bl)
    col = load_capture(demo_colmap)
    cap = load_capture(bl, init="none")
    assert cap.points_source == "none" and not cap.has_points
    assert sorted(v.name for v in cap.test) == ["test/r_0", "test/r_8"]
    assert len(cap.train) == len(col.train)
    by_index = lambda c: sorted(c.train + c.test, key=lambda v: int(v.name.split("_")[-1].split(".")[0]))  # noqa: E731
    for a, b in zip(by_index(col), by_index(cap)):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_allclose(a.K, b.K, atol=1e-9)
    np.testing.assert_allclose(cap.model_viewmats()[np.argsort([int(v.name.split("_")[-1]) for v in _all_views(cap)])],
                               col.model_viewmats(), atol=1e-9)
    # test_every and a test list pick from train and test frames alike
    every = load_capture(bl, test_every=3, init="none")
    assert len(every.test) == 4 and len(every.train) == 6
    listed = load_capture(bl, test_list=["r_3.png", "train/r_5"], init="none")
    assert sorted(v.name for v in listed.test) == ["train/r_3", "train/r_5"]


def test_blender_rgba_is_composited_on_the_background(demo_colmap, tmp_path):
    alpha = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (48, 1))
    bl = write_blender(demo_colmap, tmp_path / "blender", alpha=alpha)
    black = load_capture(bl, init="none")
    white = load_capture(bl, init="none", background=(1.0, 1.0, 1.0))
    a = (alpha / 255.0)[..., None]
    for b, w in zip(black.train, white.train):
        np.testing.assert_allclose(w.image - b.image, np.broadcast_to(1 - a, b.image.shape), atol=1e-6)
    assert np.all(black.train[0].image[:, 0] == 0)  # fully transparent: the background


def test_test_list_by_json_path_or_bare_name_and_test_every(demo_colmap, tmp_path):
    ns = write_transforms(demo_colmap, tmp_path / "ns", extension=False, per_frame=True, ply=False, applied=False)
    cap = load_capture(ns, test_list=["./images/view_002", "view_005.png", "view_007"], init="none")
    assert [v.name for v in cap.test] == ["images/view_002", "images/view_005", "images/view_007"]
    cap = load_capture(ns, test_every=4, init="none")
    assert [v.name for v in cap.test] == ["images/view_000", "images/view_004", "images/view_008"]
    with pytest.raises(Exception, match="does not have"):
        load_capture(ns, test_list=["nope.png"], init="none")


@pytest.mark.parametrize("kind", ["colmap", "transforms", "blender"])
def test_train_a_few_steps_and_export_in_the_capture_frame(demo_colmap, tmp_path, kind):
    col = load_capture(demo_colmap)
    if kind == "colmap":
        cap = col
    elif kind == "transforms":
        cap = load_capture(write_transforms(demo_colmap, tmp_path / "ns"))
    else:  # no points: random points in the common view volume
        cap = load_capture(write_blender(demo_colmap, tmp_path / "bl"), init="random", num_random_points=2000)
        assert cap.points_source == "random" and len(cap.points) == 2000
    trainer = Trainer(cap, TrainConfig(max_steps=3, sh_degree=1))
    for _ in range(3):
        assert np.isfinite(trainer.train_step()["loss"])
    assert set(trainer.evaluate()) == {"psnr", "ssim"}
    scene = read_ply(export_ply(TrainResult(trainer.gaussians()), cap, tmp_path / "scene.ply"))
    means = scene.means.double().numpy() @ cap.source_from_capture[:3, :3].T  # back to COLMAP's world
    # the exported scene sits in front of COLMAP's cameras, inside their pictures: the capture's own frame
    views = _all_views(col)
    seen = np.zeros(len(means), int)
    for view, viewmat in zip(views, col.model_viewmats()):
        cam = means @ viewmat[:3, :3].T + viewmat[:3, 3]
        uv = cam @ view.K.T
        u, v = uv[:, 0] / uv[:, 2], uv[:, 1] / uv[:, 2]
        seen += (cam[:, 2] > 0) & (u >= 0) & (u < 64) & (v >= 0) & (v < 48)
    assert np.mean(seen >= 2) > 0.9
    if kind != "blender":  # from the same SfM points: the same place
        sfm = col.points_capture_frame()
        np.testing.assert_allclose(means.mean(0), sfm.mean(0), atol=0.05 * np.ptp(sfm, axis=0).max())
    else:  # where the COLMAP cameras' common volume is, in COLMAP's world
        common, _ = random_points_in_view_volume(col.train, 2000, seed=1)
        common = common @ col.world_from_normalized[:3, :3].T + col.world_from_normalized[:3, 3]
        np.testing.assert_allclose(means.mean(0), common.mean(0), atol=0.1 * np.ptp(common, axis=0).max())


def test_portrait_and_landscape_photos_train_together(demo_colmap, tmp_path):
    from PIL import Image

    ns = write_transforms(demo_colmap, tmp_path / "ns", per_frame=True, ply=True, applied=False)
    meta = json.loads((ns / "transforms.json").read_text())
    for frame in meta["frames"][1::2]:  # every other photo turned a quarter: portrait, its camera turned with it
        path = ns / frame["file_path"]
        Image.open(path).transpose(Image.Transpose.ROTATE_270).save(path)
        c2w = np.array(frame["transform_matrix"])
        turn = np.eye(4)
        turn[:2, :2] = [[0.0, -1.0], [1.0, 0.0]]  # the camera turned a quarter about its axis, OpenGL axes
        frame["transform_matrix"] = (c2w @ turn).tolist()
        frame.update(w=frame["h"], h=frame["w"], cx=frame["h"] - frame["cy"], cy=frame["cx"],
                     fl_x=frame["fl_y"], fl_y=frame["fl_x"])
    (ns / "transforms.json").write_text(json.dumps(meta))
    cap = load_capture(ns, test_every=0)
    assert {v.image.shape for v in cap.train} == {(48, 64, 3), (64, 48, 3)}
    # a turned camera sees every SfM point at the turned pixel
    col = load_capture(demo_colmap, test_every=0)
    for a, b in zip(col.train, cap.train):
        uv_a, uv_b = _pixels(a, col.points), _pixels(b, cap.points)
        if b.image.shape[0] == 64:
            uv_a = np.stack([48 - uv_a[:, 1], uv_a[:, 0]], axis=1)
        np.testing.assert_allclose(uv_b, uv_a, atol=1e-3)
    trainer = Trainer(cap, TrainConfig(max_steps=8, sh_degree=0))
    sizes = set()
    for _ in range(8):
        record = trainer.train_step()
        assert np.isfinite(record["loss"])
    for view in cap.train:
        trainer.evaluate([view], on_view=lambda v, render, target: sizes.add(tuple(render.shape)))
    assert sizes == {(48, 64, 3), (64, 48, 3)}
    with pytest.raises(Exception, match="batch_size 1"):
        Trainer(cap, TrainConfig(max_steps=8, batch_size=2))


def test_a_transforms_json_split_is_used_unless_overridden(demo_colmap, tmp_path):
    ns = write_transforms(demo_colmap, tmp_path / "ns", ply=False)
    meta = json.loads((ns / "transforms.json").read_text())
    meta["test_filenames"] = ["./images/view_003.png", "images/view_007.png"]
    (ns / "transforms.json").write_text(json.dumps(meta))
    assert [v.name for v in load_capture(ns, init="none").test] == ["images/view_003.png", "images/view_007.png"]
    assert [v.name for v in load_capture(ns, init="none", test_every=5).test] == ["images/view_000.png",
                                                                                   "images/view_005.png"]


def test_points_for_a_capture_without_any(demo_colmap, tmp_path, capsys):
    from splatforge.capture import with_initial_points
    from splatforge.capture.init_points import _cache_key

    bl = write_blender(demo_colmap, tmp_path / "bl")
    # the tiny demo photos triangulate to (almost) nothing: auto starts from random points, and says so
    cap = load_capture(bl, num_random_points=500)
    assert cap.points_source == "random" and len(cap.points) == 500
    assert "random points" in capsys.readouterr().out
    with pytest.raises(Exception, match="no points to start from"):
        load_capture(bl, init="sfm")
    # triangulated points are read back from the cache of an earlier run on the same views
    bare = load_capture(bl, init="none")
    cached = np.random.default_rng(0).normal(size=(1500, 3))
    np.savez(tmp_path / "init_points.npz", key=_cache_key(bare), points=cached,
             colors=np.zeros((1500, 3), np.uint8))
    again = with_initial_points(bare, "auto", cache_dir=tmp_path)
    assert again.points_source == "triangulated"
    np.testing.assert_array_equal(again.points, cached)
    other = load_capture(bl, init="none", test_every=3)  # other training views: the cache does not apply
    assert _cache_key(other) != _cache_key(bare)
