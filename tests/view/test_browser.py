"""A real browser (Debian's chromium, WebGL on SwiftShader, driven by playwright) shows the viewer: the
splats are drawn where splatforge's own rasterizer puts them, a mouse drag moves the picture, and the
still panel's buttons render and save the browser's view."""

from __future__ import annotations

import io
import os
import time

import numpy as np
import pytest
import torch

from splatforge.view import SplatViewer
from splatforge.view.stills import camera_from_pose, render_still

from .conftest import blob

CHROMIUM = "/usr/bin/chromium"
WIDTH, HEIGHT = 640, 480

if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium); real-browser tests skipped",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="python playwright is missing (pip install playwright)")

# Everything but the 3D canvas hidden, so screenshots show only what WebGL drew.
CANVAS_ONLY = "body * { visibility: hidden !important; } canvas { visibility: visible !important; }"


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT}, device_scale_factor=1)
    yield page
    page.close()


def _wait(predicate, timeout=60.0, interval=0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def _client(viewer):
    clients = list(viewer.server.get_clients().values())
    return clients[0] if clients else None


def _canvas(page) -> np.ndarray:  # [H, W, 3] uint8
    from PIL import Image

    page.add_style_tag(content=CANVAS_ONLY)
    return np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"))


def _settled_camera(client, quiet=1.0, timeout=20.0):
    """The client's camera once it has stopped changing for `quiet` seconds."""
    end = time.monotonic() + timeout
    last = client.camera.update_timestamp
    while time.monotonic() < end:
        time.sleep(quiet)
        now = client.camera.update_timestamp
        if now == last:
            break
        last = now
    cam = client.camera
    return np.array(cam.wxyz), np.array(cam.position), float(cam.fov)


def _painted(shot: np.ndarray) -> np.ndarray:  # [H, W] bool: not viser's white background
    return np.abs(shot.astype(int) - 255).max(axis=2) > 40


def _check_matches_cpu_render(shot, gaussians, pose):
    """Browser pixels are painted (and red) where our rasterizer is opaque for the same camera, and
    background where it draws nothing, with a margin for the two renderers' different cut-offs."""
    wxyz, position, fov = pose
    still = render_still(gaussians, camera_from_pose(wxyz, position, fov, WIDTH, HEIGHT, max_size=None))
    alpha = torch.from_numpy(still.alpha)[None, None]
    solid = -torch.nn.functional.max_pool2d(-alpha, 9, 1, 4)[0, 0].numpy() > 0.95  # eroded
    empty = torch.nn.functional.max_pool2d(alpha, 15, 1, 7)[0, 0].numpy() < 0.01  # dilated
    assert solid.sum() > 2000 and empty.sum() > 20000, "the scene should fill part of the view"
    painted = _painted(shot)
    assert painted[solid].mean() > 0.95
    assert (~painted[empty]).mean() > 0.97
    red = shot[solid].astype(int)
    assert np.median(red[:, 0] - red[:, 1]) > 80  # the blob is red in the browser too


def test_canvas_draws_the_scene_where_the_rasterizer_does_and_a_drag_moves_it(page):
    gaussians = blob(300, spread=0.25)
    with SplatViewer(port=0) as viewer:
        viewer.show(gaussians)
        page.goto(viewer.url)
        assert _wait(lambda: _client(viewer) is not None), "the page never reported its camera"
        client = _client(viewer)
        assert _wait(lambda: _painted(_canvas(page)).mean() > 0.02), "WebGL drew no splats"
        pose = _settled_camera(client)
        before = _canvas(page)
        _check_matches_cpu_render(before, gaussians, pose)

        page.mouse.move(WIDTH / 2, HEIGHT / 2)
        page.mouse.down()
        page.mouse.move(WIDTH / 2 + 150, HEIGHT / 2 + 40, steps=15)
        page.mouse.up()
        assert _wait(lambda: not np.allclose(client.camera.position, pose[1]), timeout=20), "the drag did not orbit"
        moved = _settled_camera(client)
        after = _canvas(page)
        changed = np.abs(after.astype(int) - before.astype(int)).max(axis=2) > 40
        assert changed.mean() > 0.03  # the picture changed, not only the camera
        _check_matches_cpu_render(after, gaussians, moved)


def test_still_panel_renders_the_browser_view_and_saves_pngs(page, tmp_path):
    gaussians = blob(300, spread=0.25)
    with SplatViewer(port=0, stills_dir=tmp_path / "stills") as viewer:
        viewer.show(gaussians)
        page.goto(viewer.url)
        assert _wait(lambda: _client(viewer) is not None)
        pose = _settled_camera(_client(viewer))
        page.get_by_role("button", name="Render still").click()
        assert _wait(lambda: " ms" in viewer._still_status.content, timeout=60), viewer._still_status.content
        still = viewer._still
        cam = _client(viewer).camera
        expected = render_still(gaussians, camera_from_pose(cam.wxyz, cam.position, cam.fov, cam.image_width,
                                                            cam.image_height, max_size=960))
        np.testing.assert_allclose(still.rgb, expected.rgb, atol=1e-6)
        assert still.alpha.max() > 0.99 and np.allclose(cam.position, pose[1])
        page.get_by_role("button", name="Save PNG").click()
        assert _wait(lambda: "saved" in viewer._still_status.content, timeout=30), viewer._still_status.content
        assert sorted(p.name for p in (tmp_path / "stills").iterdir()) == [
            "still_0001_alpha.png", "still_0001_depth.npy", "still_0001_depth.png", "still_0001_rgb.png"]
