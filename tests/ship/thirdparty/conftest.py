"""The third-party readers, as fixtures: splat-transform's CLI under node, and gsplat.js in
headless Chromium (Debian's /usr/bin/chromium driven by playwright, WebGL through SwiftShader).

Both are installed by scripts/setup_thirdparty.sh (versions pinned in tools/js/package-lock.json).
A fixture skips, naming what is missing, only when a tool is absent; once a tool runs, anything it
rejects fails the test with the tool's own message.
"""

from __future__ import annotations

import base64
import functools
import http.server
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
TOOLS = REPO / "tools" / "js"
SPLAT_TRANSFORM = TOOLS / "node_modules" / "@playcanvas" / "splat-transform" / "bin" / "cli.mjs"
GSPLAT_DIST = TOOLS / "node_modules" / "gsplat" / "dist"
VIEWER_PAGE = TOOLS / "gsplat_view.html"
CHROMIUM = Path("/usr/bin/chromium")
SETUP_HINT = "run scripts/setup_thirdparty.sh"
# Software WebGL: the machines here have no GPU.
CHROMIUM_ARGS = ["--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]


class SplatTransform:
    """`splat-transform` (PlayCanvas) run as its users run it: node bin/cli.mjs IN OUT."""

    def __init__(self, node: str):
        self.node = node

    def convert(self, src: Path, dst: Path, *options: str) -> Path:
        # -g cpu: SOG's k-means otherwise asks for a WebGPU adapter, which these machines lack.
        cmd = [self.node, str(SPLAT_TRANSFORM), "-q", "-w", "-g", "cpu", *options, str(src), str(dst)]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, (
            f"splat-transform could not convert {src.name} -> {dst.name} (exit {run.returncode}):\n"
            f"{run.stderr.strip() or run.stdout.strip()}")
        assert dst.exists(), f"splat-transform exited 0 but wrote no {dst}"
        return dst


@pytest.fixture(scope="session")
def splat_transform() -> SplatTransform:
    node = shutil.which("node")
    if node is None:
        pytest.skip(f"node is not installed: splat-transform needs it ({SETUP_HINT})")
    if not SPLAT_TRANSFORM.is_file():
        pytest.skip(f"splat-transform is not installed under tools/js/node_modules ({SETUP_HINT})")
    return SplatTransform(node)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the viewer page, gsplat.js's ESM build, and the files under test; nothing else."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript",
                      ".wasm": "application/wasm"}

    def __init__(self, *args, data_dir: Path, **kwargs):
        self.data_dir = data_dir
        super().__init__(*args, directory=str(data_dir), **kwargs)

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0].split("#", 1)[0]
        name = path.rsplit("/", 1)[-1]
        if path == "/view.html":
            return str(VIEWER_PAGE)
        if path == f"/gsplat/{name}":
            return str(GSPLAT_DIST / name)
        if path == f"/data/{name}":
            return str(self.data_dir / name)
        return str(self.data_dir / "__not_served__")

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


class GsplatJs:
    """gsplat.js (the npm package's own loader and WebGL renderer) in headless Chromium."""

    def __init__(self, browser, base_url: str, data_dir: Path):
        self.browser, self.base_url, self.data_dir = browser, base_url, data_dir

    def render(self, path: Path, kind: str, view: dict, max_frames: int = 600,
               stable_frames: int = 10) -> np.ndarray:
        """Load `path` (inside data_dir) with gsplat.js's `kind` loader ("ply" or "splat"), draw
        one frame from `view` and return it as [H, W, 4] float RGBA in [0, 1], row 0 at the top.
        The canvas is cleared to transparent, so RGB is premultiplied by alpha."""
        assert path.parent == self.data_dir, f"{path} is not in the served folder {self.data_dir}"
        page = self.browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        try:
            page.set_default_timeout(30_000)
            page.goto(f"{self.base_url}/view.html")
            page.wait_for_function("window.viewerReady === true")
            try:
                out = page.evaluate("([url, kind, view]) => window.renderSplat(url, kind, view)",
                                    [f"{self.base_url}/data/{path.name}", kind,
                                     {**view, "maxFrames": max_frames, "stableFrames": stable_frames}])
            except Exception as e:
                raise AssertionError(f"gsplat.js failed on {path.name}: {e}\npage errors: {errors}") from e
        finally:
            page.close()
        rgba = np.frombuffer(base64.b64decode(out["rgba"]), np.uint8).reshape(out["height"], out["width"], 4)
        self.last_count = out["count"]
        return rgba[::-1].astype(np.float32) / 255.0  # GL rows start at the bottom


@pytest.fixture(scope="module")  # one playwright at a time: tests/view starts its own
def gsplat_js(tmp_path_factory):
    if not CHROMIUM.is_file():
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} ({SETUP_HINT})")
    if not (GSPLAT_DIST / "index.es.js").is_file():
        pytest.skip(f"gsplat.js is not installed under tools/js/node_modules ({SETUP_HINT})")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(f"the python package playwright is not installed ({SETUP_HINT})")

    data_dir = tmp_path_factory.mktemp("served")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_Handler, data_dir=data_dir))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                yield GsplatJs(browser, f"http://127.0.0.1:{server.server_address[1]}", data_dir)
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
