"""`SplatViewer`: a local viser server showing Gaussians, with a panel that renders exact CPU stills.

The browser draws the splats with viser's WebGL renderer (degree-0 colours, approximate sorting);
the "Still" panel renders the requesting client's current camera with splatforge's own
`rasterization()` (full SH, exact compositing) as RGB, depth or alpha, and saves it as PNG.
`splatforge view` (a file) and live training (`splatforge.view.live.LiveViewer`) both use it.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from splatforge.core.gaussians import Gaussians
from splatforge.core.sh import C0
from splatforge.errors import SplatforgeError
from splatforge.view.scene import covariances, scene_bounds, splat_buffer
from splatforge.view.stills import (Still, camera_from_pose, pose_from_viewmat, render_still, rotation_from_wxyz,
                                    save_still, still_image)

if TYPE_CHECKING:
    import viser

    from splatforge.capture import Capture

log = logging.getLogger(__name__)

UP_DIRECTIONS = ("+z", "-z", "+y", "-y", "+x", "-x")
THUMBNAIL_WIDTH = 160


def check_port_free(host: str, port: int) -> None:
    """Raise SplatforgeError naming `port` when it cannot be bound on `host`. viser itself would
    silently move to the next free port, so a second viewer would appear at an address nobody
    asked for."""
    if port == 0:
        return
    if not 0 < port < 65536:
        raise SplatforgeError(f"port must be in 1..65535 (or 0 for any free port), got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise SplatforgeError(f"cannot resolve host {host!r}: {err}") from err
    family, _, _, _, address = infos[0]
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        # The same option asyncio's server uses, so a port in TIME_WAIT is free for both.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
    except OSError as err:
        if err.errno in (errno.EADDRINUSE, errno.EACCES):
            raise SplatforgeError(f"port {port} on {host} is already in use (or not permitted); stop the "
                                  f"program using it or pass another --port (0 picks a free one)") from err
        raise SplatforgeError(f"cannot listen on {host}:{port}: {err}") from err
    finally:
        probe.close()


def start_viser(host: str, port: int, label: str = "splatforge") -> viser.ViserServer:
    """A running viser server on exactly `host`:`port` (port 0: any free port), or SplatforgeError."""
    import viser

    check_port_free(host, port)
    server = viser.ViserServer(host=host, port=port, label=label, verbose=False)
    if port != 0 and server.get_port() != port:  # taken between the check and the bind
        actual = server.get_port()
        server.stop()
        raise SplatforgeError(f"port {port} on {host} is already in use (viser fell back to {actual}); "
                              "stop the program using it or pass another --port")
    return server


def _thumbnail(image: np.ndarray) -> np.ndarray:  # [H, W, 3] float -> small uint8
    from PIL import Image

    h, w = image.shape[:2]
    size = (THUMBNAIL_WIDTH, max(1, round(h * THUMBNAIL_WIDTH / w)))
    return np.asarray(Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)).resize(size))


class SplatViewer:
    """A viser server showing one set of Gaussians (replaceable with `show`), an optional capture's
    camera frustums, and the still panel. Use as a context manager or call `stop()`.

    Args:
        host, port: where to listen; port 0 picks a free port (see `port`).
        stills_dir: folder the "Save PNG" button writes into.
        up: the world's up axis, for the orbit controls ("+z" for COLMAP scenes aligned by
            nerfstudio and Blender; "-y" for scenes in an OpenCV camera frame, e.g. SHARP's).
        label: the panel's title.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, stills_dir: str | os.PathLike = "stills",
                 up: str = "+z", label: str = "splatforge") -> None:
        if up not in UP_DIRECTIONS:
            raise SplatforgeError(f"up must be one of {UP_DIRECTIONS}, got {up!r}")
        self.server = start_viser(host, port, label)
        self._stopped = False
        self.host = host
        self.stills_dir = Path(stills_dir)
        self._lock = threading.Lock()  # guards _gaussians, _still, _stills_saved
        self._gaussians: Gaussians | None = None
        self._splats = None
        self.frustums: dict = {}
        self._framed = False
        self._still: Still | None = None
        self._stills_saved = 0
        self._up = np.eye(3)["xyz".index(up[1])] * (1.0 if up[0] == "+" else -1.0)
        try:
            self.server.scene.set_up_direction(up)
            self._build_panel()
        except BaseException:
            self.stop()
            raise

    # ---- lifecycle ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self.server.get_port()

    @property
    def url(self) -> str:
        host = self.host if self.host not in ("0.0.0.0", "::") else "localhost"
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        """Stop the server and join its event-loop thread. Safe to call twice."""
        if not self._stopped:
            self._stopped = True
            self.server.stop()

    def __enter__(self) -> SplatViewer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---- content ------------------------------------------------------------------------------

    def show(self, gaussians: Gaussians) -> None:
        """Show `gaussians` (CPU float32, already within the browser budget), replacing what was
        shown; the first call also points the initial camera at them."""
        gaussians = gaussians.detach()
        if len(gaussians) == 0:  # e.g. a training run pruned everything: show nothing
            if self._splats is not None:
                self._splats.remove()
                self._splats = None
        elif self._splats is None:
            self._splats = self.server.scene.add_gaussian_splats(
                "/splats", centers=gaussians.means.float().cpu().numpy(), covariances=covariances(gaussians),
                rgbs=(gaussians.sh0[:, 0].float().cpu().numpy() * C0 + 0.5).clip(0, 1),
                opacities=gaussians.activated_opacities().float().cpu().numpy()[:, None])
        else:
            self._splats.buffer = splat_buffer(gaussians)
        with self._lock:
            self._gaussians = gaussians
        if not self._framed and len(gaussians):
            self._frame(gaussians)

    def _frame(self, gaussians: Gaussians) -> None:
        centre, radius = scene_bounds(gaussians)
        up = self._up
        side = np.cross(up, [1.0, 0.0, 0.0] if abs(up[0]) < 0.9 else [0.0, 1.0, 0.0])
        eye = centre + radius * (2.0 * side / np.linalg.norm(side) + 0.8 * up)
        self.server.initial_camera.position = tuple(eye)
        self.server.initial_camera.look_at = tuple(centre)
        self._framed = True

    def show_capture(self, capture: Capture, frustum_scale: float | None = None) -> dict:
        """A frustum with a thumbnail of its photo per capture view (train and test); the initial
        camera is put at the first training view. Returns (and keeps in `frustums`) the viser
        handles by image name."""
        views = capture.train + capture.test
        centres = np.stack([np.linalg.inv(v.viewmat)[:3, 3] for v in views])
        spread = float(np.linalg.norm(centres - centres.mean(0), axis=1).max()) if len(views) > 1 else 1.0
        spread = max(spread, 1e-3)
        if frustum_scale is None:
            frustum_scale = 0.08 * spread
        for index, view in enumerate(views):
            h, w = view.image.shape[:2]
            wxyz, position = pose_from_viewmat(view.viewmat)
            self.frustums[view.name] = self.server.scene.add_camera_frustum(
                f"/capture/{view.name.replace('/', '_')}", fov=2 * math.atan(h / (2 * view.K[1, 1])),
                aspect=w / h, scale=frustum_scale, image=_thumbnail(view.image), wxyz=wxyz, position=position,
                color=(40, 90, 200) if index < len(capture.train) else (200, 90, 40))
        # start at the first training view, looking along its axis as far as the cameras' centre
        wxyz, position = pose_from_viewmat(capture.train[0].viewmat)
        forward = rotation_from_wxyz(wxyz)[:, 2]
        depth = float((centres.mean(0) - position) @ forward)
        self.server.initial_camera.position = tuple(position)
        self.server.initial_camera.look_at = tuple(position + forward * (depth if depth > 1e-6 else spread))
        self._framed = True
        return self.frustums

    def set_info(self, text: str) -> None:
        self._info.content = text

    # ---- the still panel ----------------------------------------------------------------------

    def _build_panel(self) -> None:
        gui = self.server.gui
        self._info = gui.add_markdown("no scene yet")
        with gui.add_folder("Still (CPU rasterizer)"):
            self._channel = gui.add_dropdown("Channel", ("RGB", "depth", "alpha"), initial_value="RGB")
            self._max_size = gui.add_slider("Max size (px)", min=128, max=2048, step=32, initial_value=960)
            render = gui.add_button("Render still")
            save = gui.add_button("Save PNG")
            self._still_status = gui.add_markdown("Render the current view exactly, with full SH.")
            self._still_image = gui.add_image(np.full((4, 4, 3), 255, np.uint8), label="still", format="png")

        @render.on_click
        def _(event) -> None:
            self._on_render(event.client)

        @save.on_click
        def _(event) -> None:
            self._on_save()

        @self._channel.on_update
        def _(event) -> None:
            with self._lock:
                still = self._still
            if still is not None:
                self._still_image.image = still_image(still, self._channel.value)

    def render_client_still(self, client) -> Still:
        """Render what `client` (a viser ClientHandle) sees with `rasterization()`. Raises
        SplatforgeError when nothing is shown yet or the client has not reported a camera."""
        camera = client.camera
        if camera.update_timestamp == 0.0:
            raise SplatforgeError("this browser has not reported its camera yet; move the view and retry")
        with self._lock:
            gaussians = self._gaussians
        if gaussians is None or len(gaussians) == 0:
            raise SplatforgeError("there are no Gaussians to render yet")
        cam = camera_from_pose(camera.wxyz, camera.position, camera.fov, camera.image_width,
                               camera.image_height, max_size=int(self._max_size.value))
        return render_still(gaussians, cam)

    def _on_render(self, client) -> None:
        # Runs on viser's thread pool: every failure, including the client leaving mid-render,
        # ends as a status line, never as an exception in the server.
        self._still_status.content = "rendering..."
        try:
            start = time.perf_counter()
            still = self.render_client_still(client)
            ms = (time.perf_counter() - start) * 1000
        except SplatforgeError as err:
            self._still_status.content = f"not rendered: {err}"
            return
        except Exception as err:  # noqa: BLE001 - a crash here would only kill one callback silently
            log.exception("still render failed")
            self._still_status.content = f"not rendered: {type(err).__name__}: {err}"
            return
        with self._lock:
            self._still = still
        self._still_image.image = still_image(still, self._channel.value)
        self._still_status.content = f"{still.camera.width}x{still.camera.height}, {ms:.0f} ms"

    def save_last_still(self) -> list[Path]:
        """Write the last rendered still (RGB, depth, alpha PNGs and metric depth .npy) into
        `stills_dir` as still_NNNN_*; raises SplatforgeError if none was rendered."""
        with self._lock:
            still = self._still
            if still is None:
                raise SplatforgeError("no still rendered yet; press 'Render still' first")
            self._stills_saved += 1
            stem = f"still_{self._stills_saved:04d}"
        return save_still(still, self.stills_dir, stem)

    def _on_save(self) -> None:
        try:
            paths = self.save_last_still()
        except SplatforgeError as err:
            self._still_status.content = f"not saved: {err}"
            return
        self._still_status.content = f"saved {paths[0]} (+ depth, alpha)"
