"""`splatforge export-html`: the page opens in a real browser (Debian's chromium, WebGL on SwiftShader,
driven by playwright) from the file system and from a static web server, with every request other
than the page itself refused; the splat is drawn in the middle of the view, and a mouse drag orbits
it. Bad input fails with a clear error and writes nothing."""

from __future__ import annotations

import functools
import http.server
import io
import os
import threading
import time

import numpy as np
import pytest
import torch

from splatforge.cli import main
from splatforge.core.gaussians import Gaussians
from splatforge.errors import SplatforgeError
from splatforge.io.ply import write_ply
from splatforge.view.html import export_html, export_scene_html

from .conftest import CHROMIUM, CHROMIUM_ARGS, SETUP_HINT

WIDTH, HEIGHT = 640, 480
# Everything but the 3D canvas hidden (viser's panel, its "software WebGL" notice), so screenshots
# show only what WebGL drew.
CANVAS_ONLY = "body * { visibility: hidden !important; } canvas { visibility: visible !important; }"
CENTRE = (3.0, -2.0, 1.0)  # away from the origin: the page must frame the scene, not the world


def red_ball(n: int = 300, centre=CENTRE) -> Gaussians:
    gen = torch.Generator().manual_seed(0)
    means = torch.randn(n, 3, generator=gen) * 0.25 + torch.tensor(centre)
    g = Gaussians.from_points(means, torch.tensor([[0.9, 0.1, 0.1]]).repeat(n, 1), sh_degree=1, scale=0.05,
                              opacity=0.9)
    g.quats = torch.randn(n, 4, generator=gen)
    g.scales = g.scales + torch.randn(n, 3, generator=gen) * 0.3
    return g


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} ({SETUP_HINT})")
    sync_api = pytest.importorskip("playwright.sync_api", reason=f"python playwright is missing ({SETUP_HINT})")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Page:
    """A browser tab that refuses (and records) every request but the page's own URL and the
    blob:/data: URLs the page makes itself: the page must need nothing else."""

    def __init__(self, browser, url: str):
        self.page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT}, device_scale_factor=1)
        self.refused: list[str] = []
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

        def route(r):
            if r.request.url == url or r.request.url.startswith(("blob:", "data:")):
                r.continue_()
            else:
                self.refused.append(r.request.url)
                r.abort()

        self.page.route("**/*", route)
        self.page.goto(url)
        self.page.add_style_tag(content=CANVAS_ONLY)

    def shot(self) -> np.ndarray:  # [H, W, 3] uint8
        from PIL import Image

        return np.asarray(Image.open(io.BytesIO(self.page.screenshot())).convert("RGB"))

    def wait_drawn(self, timeout: float = 90.0) -> np.ndarray:
        """A screenshot once the splat covers part of the view and has stopped changing (the
        renderer sorts in a worker and refines over a few frames)."""
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            shot = self.shot()
            if painted(shot).mean() > 0.02 and last is not None and np.abs(shot.astype(int) - last).max() < 40:
                return shot
            last = shot.astype(int)
            time.sleep(1.0)
        raise AssertionError(f"the page drew no splat in {timeout:.0f} s (errors: {self.errors}, "
                             f"refused: {self.refused})")

    def drag(self, dx: float, dy: float) -> None:
        self.page.mouse.move(WIDTH / 2, HEIGHT / 2)
        self.page.mouse.down()
        self.page.mouse.move(WIDTH / 2 + dx, HEIGHT / 2 + dy, steps=15)
        self.page.mouse.up()


def painted(shot: np.ndarray) -> np.ndarray:  # [H, W] bool: not the page's white background
    return np.abs(shot.astype(int) - 255).max(axis=2) > 40


def check_red_ball_in_the_middle(shot: np.ndarray) -> None:
    mask = painted(shot)
    assert 0.02 < mask.mean() < 0.6, f"the ball covers {mask.mean():.1%} of the view"
    ys, xs = np.nonzero(mask)
    assert abs(xs.mean() - WIDTH / 2) < 0.1 * WIDTH and abs(ys.mean() - HEIGHT / 2) < 0.1 * HEIGHT, \
        f"the ball is drawn around ({xs.mean():.0f}, {ys.mean():.0f}), not the middle of the view"
    rgb = shot[mask].astype(int)
    assert np.median(rgb[:, 0] - rgb[:, 1]) > 80  # red, as the file says


def test_page_from_the_file_system_draws_the_splat_in_the_middle_and_a_drag_orbits_it(browser, tmp_path):
    page_path = export_html(red_ball(), tmp_path / "ball.html")
    assert sorted(os.listdir(tmp_path)) == ["ball.html"]
    page = Page(browser, page_path.as_uri())
    try:
        before = page.wait_drawn()
        check_red_ball_in_the_middle(before)
        page.drag(150, 40)
        after = page.wait_drawn()
        changed = np.abs(after.astype(int) - before.astype(int)).max(axis=2) > 40
        assert changed.mean() > 0.03, "a drag did not move the picture"
        assert painted(after).mean() > 0.02
        assert page.refused == [] and page.errors == []
    finally:
        page.page.close()


class _Static(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


def test_cli_folder_output_is_served_by_a_static_host(browser, tmp_path, capsys):
    scene = tmp_path / "ball.ply"
    write_ply(scene, red_ball())
    site = tmp_path / "site"
    assert main(["export-html", str(scene), "-o", str(site), "--max-gaussians", "200"]) == 0
    out = capsys.readouterr().out
    assert sorted(os.listdir(site)) == ["index.html"]
    size = os.path.getsize(site / "index.html")
    assert f"{site / 'index.html'}: {size:,} bytes, 200 Gaussians" in out
    assert "showing 200 of 300 Gaussians" in out
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Static, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        page = Page(browser, url)
        try:
            check_red_ball_in_the_middle(page.wait_drawn())
            assert page.refused == [] and page.errors == []
        finally:
            page.page.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_page_embeds_the_scene_and_grows_with_it(tmp_path):
    small = export_html(red_ball(100), tmp_path / "small.html")
    large = export_html(red_ball(2000), tmp_path / "large.html")
    text = small.read_text()
    assert "window.__VISER_EMBED_DATA__=" in text and "<title>splatforge</title>" in text
    assert text.lower().startswith("<!doctype html>\n<!-- viewer: the viser")  # its licence travels with it
    assert "Apache License" in text.split("-->")[0]
    assert "http://" not in text.split("__VISER_EMBED_DATA__")[1][:200]
    # the splats travel in the page: about 32 bytes each, base64-encoded after compression
    per_gaussian = (large.stat().st_size - small.stat().st_size) / 1900
    assert 16 < per_gaussian < 48, per_gaussian


def test_existing_page_needs_overwrite(tmp_path, capsys):
    scene = tmp_path / "ball.ply"
    write_ply(scene, red_ball(50))
    page = tmp_path / "page.html"
    page.write_text("mine")
    assert main(["export-html", str(scene), "-o", str(page)]) == 2
    err = capsys.readouterr().err
    assert f"{page} already exists; pass --overwrite" in err
    assert page.read_text() == "mine"
    assert main(["export-html", str(scene), "-o", str(page), "--overwrite"]) == 0
    assert "__VISER_EMBED_DATA__" in page.read_text()
    assert sorted(os.listdir(tmp_path)) == ["ball.ply", "page.html"]


@pytest.mark.parametrize("case", ["missing scene", "empty scene", "no such folder", "file as folder",
                                  "max gaussians 0"])
def test_bad_input_names_the_problem_and_writes_nothing(tmp_path, capsys, case):
    scene = tmp_path / "ball.ply"
    write_ply(scene, red_ball(0) if case == "empty scene" else red_ball(50))
    output, extra, expected = tmp_path / "page.html", [], ""
    if case == "missing scene":
        scene, expected = tmp_path / "nope.ply", "nope.ply"
    elif case == "empty scene":
        expected = "holds no Gaussians"
    elif case == "no such folder":
        output, expected = tmp_path / "absent" / "page.html", "does not exist"
    elif case == "file as folder":
        output, expected = tmp_path / "ball.ply", "is a file, not a folder"
    else:
        extra, expected = ["--max-gaussians", "0"], "max_gaussians must be >= 1"
    before = sorted(os.listdir(tmp_path))
    assert main(["export-html", str(scene), "-o", str(output), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("splatforge export-html: error: ") and expected in err, err
    assert sorted(os.listdir(tmp_path)) == before


def test_python_api_checks_the_up_axis_before_writing(tmp_path):
    with pytest.raises(SplatforgeError, match="up must be one of"):
        export_html(red_ball(10), tmp_path / "p.html", up="z")
    with pytest.raises(SplatforgeError, match="up must be one of"):
        export_scene_html(tmp_path / "whatever.ply", tmp_path / "p.html", up="up")
    assert os.listdir(tmp_path) == []
