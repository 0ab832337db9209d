"""Loading scenes for viewing: files, training folders, bad input, subsampling, viser's buffer."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

from splatforge.errors import SplatforgeError
from splatforge.io.ply import write_ply
from splatforge.view.scene import (covariances, importance, load_view_scene, newest_ply, splat_buffer,
                                   subsample_for_browser)

from .conftest import blob


def test_ply_file_loads_unchanged(tmp_path, red_blob):
    write_ply(tmp_path / "scene.ply", red_blob)
    scene = load_view_scene(tmp_path / "scene.ply")
    assert scene.message is None and scene.total == len(red_blob) == len(scene.gaussians)
    for name, value in red_blob.named_parameters():
        torch.testing.assert_close(getattr(scene.gaussians, name), value)


def test_folder_shows_its_newest_ply(tmp_path):
    old, new = blob(50, seed=1), blob(70, seed=2)
    (tmp_path / "point_cloud" / "iteration_7000").mkdir(parents=True)
    (tmp_path / "point_cloud" / "iteration_30000").mkdir(parents=True)
    write_ply(tmp_path / "point_cloud" / "iteration_30000" / "point_cloud.ply", new)
    write_ply(tmp_path / "point_cloud" / "iteration_7000" / "point_cloud.ply", old)
    (tmp_path / "cameras.json").write_text("[]")
    now = time.time()
    os.utime(tmp_path / "point_cloud" / "iteration_7000" / "point_cloud.ply", (now - 100, now - 100))
    scene = load_view_scene(tmp_path)
    assert scene.source == tmp_path / "point_cloud" / "iteration_30000" / "point_cloud.ply"
    assert len(scene.gaussians) == 70
    os.utime(tmp_path / "point_cloud" / "iteration_7000" / "point_cloud.ply", (now + 100, now + 100))
    assert newest_ply(tmp_path).parent.name == "iteration_7000"


def test_missing_empty_and_corrupt_inputs_are_clear_errors(tmp_path, red_blob):
    with pytest.raises(SplatforgeError, match="not found"):
        load_view_scene(tmp_path / "nope.ply")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SplatforgeError, match="no .ply file"):
        load_view_scene(tmp_path / "empty")
    (tmp_path / "junk.ply").write_bytes(b"this is not a ply file\n" * 10)
    with pytest.raises(SplatforgeError):
        load_view_scene(tmp_path / "junk.ply")
    write_ply(tmp_path / "whole.ply", red_blob)
    data = (tmp_path / "whole.ply").read_bytes()
    (tmp_path / "cut.ply").write_bytes(data[: len(data) // 2])
    with pytest.raises(SplatforgeError):
        load_view_scene(tmp_path / "cut.ply")
    bad = red_blob.clone()
    bad.means[3, 0] = float("nan")
    write_ply(tmp_path / "nan.ply", bad)
    with pytest.raises(SplatforgeError, match="non-finite"):
        load_view_scene(tmp_path / "nan.ply")


def test_subsampling_keeps_the_most_opaque_and_largest_with_a_message(tmp_path):
    g = blob(1000, seed=3)
    g.opacities[:10] = 8.0  # nearly opaque
    g.scales[:10] = np.log(0.5)  # and large: these must survive
    g.opacities[10:20] = -8.0  # nearly transparent
    g.scales[10:20] = np.log(0.5)  # large but invisible: these must go
    shown, message = subsample_for_browser(g, 300)
    assert len(shown) == 300 and "300 of 1,000" in message and "--max-gaussians" in message
    kept = {tuple(row) for row in shown.means.tolist()}
    assert all(tuple(row) in kept for row in g.means[:10].tolist())
    assert not any(tuple(row) in kept for row in g.means[10:20].tolist())
    cutoff = importance(shown).min()
    assert int((importance(g) > cutoff).sum()) <= 300
    write_ply(tmp_path / "big.ply", g)
    scene = load_view_scene(tmp_path / "big.ply", max_gaussians=300)
    assert scene.total == 1000 and len(scene.gaussians) == 300 and scene.message == message
    same, none = subsample_for_browser(g, 1000)
    assert same is g and none is None


def test_covariances_and_buffer_match_visers_own_packing(red_blob):
    import viser

    g = red_blob[:3].clone()
    g.scales[:] = torch.log(torch.tensor([0.1, 0.2, 0.3]))
    half = np.sqrt(0.5)
    g.quats[0] = torch.tensor([2.0, 0, 0, 0])  # identity, unnormalized
    g.quats[1] = torch.tensor([half, 0, 0, half])  # 90 degrees about z: x and y swap
    g.quats[2] = torch.tensor([half, half, 0, 0])  # 90 degrees about x: y and z swap
    np.testing.assert_allclose(covariances(g), np.stack([np.diag([0.01, 0.04, 0.09]), np.diag([0.04, 0.01, 0.09]),
                                                          np.diag([0.01, 0.09, 0.04])]), atol=1e-7)
    g = red_blob
    server = viser.ViserServer(host="127.0.0.1", port=0, verbose=False)
    try:
        handle = server.scene.add_gaussian_splats(
            "/x", centers=g.means.numpy(), covariances=covariances(g),
            rgbs=(0.5 + 0.28209479177387814 * g.sh0[:, 0].numpy()).clip(0, 1),
            opacities=g.activated_opacities().numpy()[:, None])
        theirs, ours = handle.buffer.view(np.uint8).reshape(-1, 32), splat_buffer(g).view(np.uint8).reshape(-1, 32)
    finally:
        server.stop()
    np.testing.assert_array_equal(ours[:, :28], theirs[:, :28])
    # viser truncates colours to uint8, we round: at most one step apart
    assert np.abs(ours[:, 28:].astype(int) - theirs[:, 28:].astype(int)).max() <= 1



def test_other_formats_load_through_io_scene(tmp_path, red_blob):
    scene_io = pytest.importorskip("splatforge.io.scene", reason="splatforge.io.scene (.splat/SPZ/SOG) not installed")
    scene_io.save_scene(red_blob, tmp_path / "scene.splat")
    scene = load_view_scene(tmp_path / "scene.splat", max_gaussians=100)
    assert scene.total == len(red_blob) and len(scene.gaussians) == 100 and "100 of 400" in scene.message
    torch.testing.assert_close(scene.gaussians.means, red_blob.means[torch.topk(importance(scene_io.load_scene(
        tmp_path / "scene.splat")), 100).indices.sort().values])
