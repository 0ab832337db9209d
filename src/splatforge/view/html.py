"""`export_html`: a splat scene as one self-contained web page with orbit controls.

The page is viser's own web client (the single-file build shipped inside the viser wheel, the same
client `splatforge view` serves) with the scene recorded into it by viser's static embedding
(`ViserServer.scene.as_html()`): the splats, the up direction and the initial camera travel as a
zstd-compressed base64 payload in the page. Nothing is fetched when it opens, so it works from
the file system (file://), any static host, or an e-mail attachment. viser's renderer draws the
degree-0 colours (no view-dependent SH) and sorts the splats in a web worker.

A recording is made by a viser server, so one runs for the export on a free local port
(127.0.0.1 only) and stops before `export_html` returns.

Licences: viser is Apache-2.0 (its wheel's LICENSE file); the page redistributes its client, so
the licence text goes into the page as a comment. The client bundles permissively licensed
libraries (three.js, React, Mantine, react-three-fiber/drei: MIT; fuse.js: Apache-2.0).
"""

from __future__ import annotations

import contextlib
import html
import io
import os
from pathlib import Path

import numpy as np

from splatforge.core.fsutil import atomic_write
from splatforge.core.gaussians import Gaussians
from splatforge.core.sh import C0
from splatforge.errors import SplatforgeError
from splatforge.view.scene import DEFAULT_MAX_GAUSSIANS, ViewScene, covariances, load_view_scene, scene_bounds
from splatforge.view.viewer import UP_DIRECTIONS, start_viser

__all__ = ["export_html", "export_scene_html", "html_path"]


def html_path(output: str | os.PathLike) -> Path:
    """The page `output` names: itself when it ends in .html or .htm, else `output`/index.html
    (a folder to upload to a static host as it is)."""
    output = Path(output)
    return output if output.suffix.lower() in (".html", ".htm") else output / "index.html"


def _check_output(output: Path, overwrite: bool) -> Path:
    page = html_path(output)
    if page.exists() and not overwrite:
        raise SplatforgeError(f"{page} already exists; pass --overwrite (overwrite=True) to replace it")
    if page.exists() and page.is_dir():
        raise SplatforgeError(f"{page} is a folder; name the page (.html) or another folder")
    folder = page.parent
    if page != output:  # a folder of our own: its parent must exist, as for a file
        if output.exists() and not output.is_dir():
            raise SplatforgeError(f"{output} is a file, not a folder; name the page .html to replace it")
        if not output.parent.is_dir():
            raise SplatforgeError(f"cannot write {page}: the folder {output.parent} does not exist")
    elif not folder.is_dir():
        raise SplatforgeError(f"cannot write {page}: the folder {folder} does not exist")
    return page


def _licence_comment() -> str:
    from importlib.metadata import PackageNotFoundError, distribution

    text = ""
    try:
        dist = distribution("viser")
        licence = next((f for f in dist.files or () if f.name == "LICENSE" and "dist-info" in str(f)), None)
        text = licence.read_text() if licence is not None else ""
        version = dist.version
    except (PackageNotFoundError, OSError):
        version = "?"
    text = (text or "Apache License 2.0").replace("--", "- -")  # "--" may not appear inside a comment
    return (f"<!-- Viewer: the viser {version} web client (https://github.com/viser-project/viser), "
            f"redistributed under its licence:\n{text}\n-->\n")


def _record(gaussians: Gaussians, up: str, dark_mode: bool) -> str:
    """viser's standalone page with `gaussians` and a camera framing them."""
    quiet = io.StringIO()  # viser prints a banner on start and a line on stop, whatever `verbose` says
    with contextlib.redirect_stdout(quiet):
        server = start_viser("127.0.0.1", 0, label="splatforge")
    try:
        server.scene.set_up_direction(up)
        g = gaussians.detach().to("cpu")
        server.scene.add_gaussian_splats(
            "/splats", centers=g.means.float().numpy(), covariances=covariances(g),
            rgbs=(g.sh0[:, 0].float().numpy() * C0 + 0.5).clip(0, 1),
            opacities=g.activated_opacities().float().numpy()[:, None])
        centre, radius = scene_bounds(g)
        up_axis = np.eye(3)["xyz".index(up[1])] * (1.0 if up[0] == "+" else -1.0)
        side = np.cross(up_axis, [1.0, 0.0, 0.0] if abs(up_axis[0]) < 0.9 else [0.0, 1.0, 0.0])
        eye = centre + radius * (2.0 * side / np.linalg.norm(side) + 0.8 * up_axis)
        server.initial_camera.position = tuple(float(v) for v in eye)
        server.initial_camera.look_at = tuple(float(v) for v in centre)
        server.initial_camera.up = tuple(float(v) for v in up_axis)
        return server.scene.as_html(dark_mode=dark_mode)
    finally:
        with contextlib.redirect_stdout(quiet):
            server.stop()


def export_html(gaussians: Gaussians, output: str | os.PathLike, up: str = "+z", title: str = "splatforge",
                dark_mode: bool = False, overwrite: bool = False) -> Path:
    """Write `gaussians` as a self-contained web page (see the module doc) and return its path.

    Args:
        gaussians: the scene, all of it shown (cut large scenes first, e.g. with
            `splatforge.io.filters.decimate`): the page is about 820 KB of viewer plus 25-40 bytes
            per Gaussian (4,000: 0.97 MB; 138,766 garden points: 4.1 MB).
        output: a .html/.htm file, or a folder that gets an index.html (created if missing).
        up: the world's up axis for the orbit controls, one of +z -z +y -y +x -x.
        title: the page's title.
        dark_mode: a dark background instead of white.
        overwrite: replace an existing page; otherwise an existing one is an error.
    """
    if up not in UP_DIRECTIONS:
        raise SplatforgeError(f"up must be one of {UP_DIRECTIONS}, got {up!r}")
    if len(gaussians) == 0:
        raise SplatforgeError("the scene holds no Gaussians; there is nothing to show")
    output = Path(output)
    page = _check_output(output, overwrite)
    text = _record(gaussians, up, dark_mode)
    text = text.replace("<title>Viser</title>", f"<title>{html.escape(title)}</title>", 1)
    doctype = text.lower().find("<!doctype html>")
    cut = doctype + len("<!doctype html>") + 1 if doctype >= 0 else 0
    text = text[:cut] + _licence_comment() + text[cut:]
    if page != output:
        output.mkdir(exist_ok=True)
    return atomic_write(page, text.encode("utf-8"))


def export_scene_html(scene: str | os.PathLike, output: str | os.PathLike,
                      max_gaussians: int | None = DEFAULT_MAX_GAUSSIANS, up: str = "+z", dark_mode: bool = False,
                      overwrite: bool = False) -> tuple[Path, ViewScene]:
    """What `splatforge export-html` runs: read `scene` (any splat format, or a training folder's
    newest .ply, as `splatforge view` does), keep at most `max_gaussians` (the most opaque and
    largest), and write the page. Returns the page's path and what was loaded (`.message` says if
    the scene was cut)."""
    if up not in UP_DIRECTIONS:
        raise SplatforgeError(f"up must be one of {UP_DIRECTIONS}, got {up!r}")
    if max_gaussians is not None and max_gaussians < 1:
        raise SplatforgeError(f"max_gaussians must be >= 1, got {max_gaussians}")
    _check_output(Path(output), overwrite)  # before the (slow) read
    loaded = load_view_scene(scene, max_gaussians)
    page = export_html(loaded.gaussians, output, up=up, title=loaded.source.name, dark_mode=dark_mode,
                       overwrite=overwrite)
    return page, loaded
