"""The viewer server: clean start and stop, clear errors, capture frustums, live updates, disconnects."""

from __future__ import annotations

import logging
import socket
import threading
import time

import numpy as np
import pytest

from splatforge.errors import SplatforgeError
from splatforge.io.ply import write_ply
from splatforge.view import LiveViewer, SplatViewer, open_scene_viewer
from splatforge.view.stills import camera_from_pose, render_still
from splatforge.cli import parse_command_line

from .conftest import FOV_50, blob, look_pose


def _wait(predicate, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_starts_on_an_ephemeral_port_and_stops_with_threads_joined(red_blob):
    before = set(threading.enumerate())
    viewer = SplatViewer(port=0)
    port = viewer.port
    assert port > 0 and viewer.url == f"http://127.0.0.1:{port}"
    viewer.show(red_blob)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:  # really listening
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.recv(12).startswith(b"HTTP/1.1 200")
    viewer.stop()
    viewer.stop()  # twice is harmless
    assert _wait(lambda: not (set(threading.enumerate()) - before)), set(threading.enumerate()) - before
    assert _port_is_free(port)


def test_port_in_use_is_a_clear_error_naming_the_port():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SplatforgeError, match=f"port {port} .*already in use"):
            SplatViewer(port=port)
        with pytest.raises(SplatforgeError, match=f"port {port}"):
            LiveViewer(port=port)


def _cli(argv):
    """What cli.main does with a registered subcommand: parse, run, turn SplatforgeError into exit 2."""
    command, options = parse_command_line(argv)
    try:
        command.run(options)
    except SplatforgeError as exc:
        return 2, str(exc)
    return 0, ""


def test_cli_view_serves_reports_subsampling_and_fails_clearly(tmp_path, capsys):
    write_ply(tmp_path / "scene.ply", blob(500))
    code, _ = _cli(["view", str(tmp_path / "scene.ply"), "--port", "0", "--max-gaussians", "200", "--seconds", "0.2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "showing 200 of 500 Gaussians" in out and "viewer running at http://127.0.0.1:" in out
    code, message = _cli(["view", str(tmp_path / "missing.ply"), "--port", "0", "--seconds", "0"])
    assert code == 2 and "not found" in message
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, message = _cli(["view", str(tmp_path / "scene.ply"), "--port", str(port), "--seconds", "0"])
    assert code == 2 and f"port {port}" in message


def test_cli_view_defaults_are_those_of_open_scene_viewer():
    import inspect
    from pathlib import Path

    _, opts = parse_command_line(["view", "scene.ply"])
    default = {name: p.default for name, p in inspect.signature(open_scene_viewer).parameters.items()}
    assert (opts.host, opts.port, opts.max_gaussians, opts.capture, opts.up) == (
        default["host"], default["port"], default["max_gaussians"], default["capture"], default["up"])
    assert opts.stills_dir == Path(default["stills_dir"])


def test_capture_cameras_become_frustums_with_thumbnails(tmp_path):
    pytest.importorskip("pycolmap")
    from ..io.test_colmap import build_model
    from ..capture.test_colmap import write_photos

    root, poses, _, _ = build_model(tmp_path, cameras=[("PINHOLE", [60.0, 62.0, 31.0, 25.0])] * 3, n_points=20)
    write_photos(root, poses)
    write_ply(tmp_path / "scene.ply", blob(100))
    viewer, scene = open_scene_viewer(tmp_path / "scene.ply", port=0, capture=root)
    try:
        assert sorted(viewer.frustums) == sorted(poses)
        for name, handle in viewer.frustums.items():
            rot, t = poses[name][:3, :3], poses[name][:3, 3]  # cam_from_world [3, 4]
            np.testing.assert_allclose(handle.position, -rot.T @ t, atol=1e-6)
            assert handle.image is not None and handle.image.shape[1] == 160
            assert np.isclose(handle.aspect, 64 / 48)
            assert np.isclose(handle.fov, 2 * np.arctan(24 / 62.0))
        assert len(scene.gaussians) == 100
    finally:
        viewer.stop()


def test_live_viewer_refreshes_only_when_due_and_shows_stats():
    g = blob(300)
    with LiveViewer(port=0, every=10, max_gaussians=100) as live:
        assert live.update(0, g, {"loss": 0.5, "psnr": 20.0, "count": 300, "steps_per_second": 12.0})
        assert not any(live.update(step, g, {}) for step in range(1, 10))  # not due: nothing happens
        assert live.wait_idle() and live.refreshes == 1
        shown = live.viewer._splats.buffer
        assert shown.shape == (100, 8)  # subsampled to max_gaussians
        info = live.viewer._info.content
        assert "step 0" in info and "PSNR (dB): 20.00" in info and "100 of 300" in info
        g.means += 1.0  # training moves the Gaussians in place
        assert live.update(10, g, {"loss": 0.4})
        assert live.wait_idle() and live.refreshes == 2
        centres = live.viewer._splats.buffer.view(np.uint8).reshape(-1, 32)[:, :12].copy().view(np.float32)
        assert centres.mean() > 0.5  # the new positions reached the scene
        assert "step 10" in live.viewer._info.content
        thread = live._worker
    assert not thread.is_alive()


def _viser_client(port: int):
    """A websocket client speaking viser's protocol far enough to be a registered client: it reports a
    camera, as the browser does on load."""
    import msgspec
    import viser
    from websockets.sync.client import connect

    ws = connect(f"ws://127.0.0.1:{port}", subprotocols=[f"viser-v{viser.__version__}"], max_size=None)
    wxyz, position = look_pose([0.0, -2.5, 0.5], [0.0, 0.0, 0.0])
    ws.send(msgspec.msgpack.encode({
        "type": "ViewerCameraMessage", "wxyz": wxyz.tolist(), "position": position.tolist(), "fov": FOV_50,
        "near": 0.01, "far": 100.0, "image_height": 150, "image_width": 200, "look_at": [0.0, 0.0, 0.0],
        "up_direction": [0.0, 0.0, 1.0]}))
    return ws


def test_client_disconnecting_mid_refresh_does_not_crash(caplog):
    big = blob(60_000, seed=5)
    caplog.set_level(logging.ERROR)
    with LiveViewer(port=0, every=1, max_gaussians=60_000) as live:
        for attempt in range(3):
            ws = _viser_client(live.port)
            ws.recv(timeout=10)  # the server is talking to this client
            assert _wait(lambda: len(live.viewer.server.get_clients()) == 1)
            live.update(attempt * 2, big, {"loss": 0.1})
            ws.close()  # gone while the 1.9 MB scene is being packed and sent
            live.update(attempt * 2 + 1, big, {"loss": 0.1})
            assert live.wait_idle()
            assert _wait(lambda: not live.viewer.server.get_clients())
        ws = _viser_client(live.port)  # still serving after all that
        ws.recv(timeout=10)
        ws.close()
        assert live.refreshes >= 3
    assert not [r for r in caplog.records if r.name.startswith("splatforge")]


def test_still_of_a_client_camera_is_the_cpu_render(red_blob):
    class FakeCamera:  # what viser's CameraHandle reports, for a client without a browser
        wxyz, position = look_pose([0.0, -2.5, 0.5], [0.0, 0.0, 0.0])
        fov, image_width, image_height, update_timestamp = FOV_50, 200, 150, 1.0

    class FakeClient:
        camera = FakeCamera()

    with SplatViewer(port=0, stills_dir="unused") as viewer:
        with pytest.raises(SplatforgeError, match="no Gaussians"):
            viewer.render_client_still(FakeClient())
        viewer.show(red_blob)
        still = viewer.render_client_still(FakeClient())
        expected = render_still(red_blob, camera_from_pose(FakeCamera.wxyz, FakeCamera.position, FOV_50, 200, 150))
        np.testing.assert_array_equal(still.rgb, expected.rgb)
        assert still.alpha.max() > 0.99
        with pytest.raises(SplatforgeError, match="no still"):
            viewer.save_last_still()
