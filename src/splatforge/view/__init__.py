"""Interactive viewing of splat scenes and live training in the browser, on viser.

- `view_scene(path, ...)`: what `splatforge view` runs: a file or training folder, optional capture
  frustums, and a panel rendering exact CPU stills of the browser's camera.
- `LiveViewer`: the same viewer fed by a training loop, cheap when no refresh is due.
"""

from splatforge.view.live import LiveViewer
from splatforge.view.scene import DEFAULT_MAX_GAUSSIANS, ViewScene, load_view_scene, subsample_for_browser
from splatforge.view.viewer import SplatViewer, start_viser

__all__ = ["LiveViewer", "SplatViewer", "ViewScene", "load_view_scene", "subsample_for_browser", "start_viser",
           "DEFAULT_MAX_GAUSSIANS", "open_scene_viewer"]


def open_scene_viewer(path, host: str = "127.0.0.1", port: int = 8080,
                      max_gaussians: int | None = DEFAULT_MAX_GAUSSIANS, capture=None, stills_dir="stills",
                      up: str = "+z") -> tuple[SplatViewer, ViewScene]:
    """Load `path` (a splat file or a training folder: its newest .ply) and serve it; `capture` (any format
    `load_capture` reads) adds its cameras as frustums with thumbnails. Returns the running viewer (stop it
    with `.stop()`) and what was loaded (`.message` says if it was subsampled)."""
    scene = load_view_scene(path, max_gaussians)
    cap = None
    if capture is not None:
        from splatforge.capture import load_capture

        # the frame exported scenes are written in; no starting points needed to show cameras
        cap = load_capture(capture, normalize=False, init="none")
    viewer = SplatViewer(host, port, stills_dir=stills_dir, up=up)
    try:
        viewer.show(scene.gaussians)
        if cap is not None:
            viewer.show_capture(cap)
        info = f"**{scene.source.name}**: {len(scene.gaussians):,} Gaussians"
        if scene.message:
            info += f"\n\n{scene.message}"
        viewer.set_info(info)
    except BaseException:
        viewer.stop()
        raise
    return viewer, scene
