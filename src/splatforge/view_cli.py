"""`splatforge view`: serve a splat scene (or a training folder's newest .ply) in the browser."""

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from splatforge._cli_util import Commands
from splatforge.errors import SplatforgeError

UpDirection = Literal["+z", "-z", "+y", "-y", "+x", "-x"]  # splatforge.view.viewer.UP_DIRECTIONS


def _view_options():
    import inspect

    import tyro

    from splatforge.view import open_scene_viewer

    # the defaults of the library call the command makes
    default = {name: p.default for name, p in inspect.signature(open_scene_viewer).parameters.items()}

    @dataclass
    class ViewOptions:
        path: tyro.conf.Positional[Path]  # a splat file, or a folder whose newest *.ply is shown
        host: str = default["host"]  # address to listen on (0.0.0.0: every interface)
        port: int = default["port"]  # port to listen on; 0 picks a free one
        # send at most this many Gaussians to the browser, the most opaque and largest first
        max_gaussians: int = default["max_gaussians"]
        # a capture (COLMAP, transforms.json or Blender): show its cameras as frustums with thumbnails
        capture: Optional[Path] = default["capture"]
        stills_dir: Path = Path(default["stills_dir"])  # where 'Save PNG' writes stills
        up: UpDirection = default["up"]  # world up axis for the orbit controls
        seconds: Optional[float] = None  # stop after this many seconds (default: run until Ctrl+C)

    return ViewOptions


def _cmd_view(args) -> None:
    from splatforge.view import open_scene_viewer

    if args.max_gaussians < 1:
        raise SplatforgeError(f"--max-gaussians must be >= 1, got {args.max_gaussians}")
    viewer, scene = open_scene_viewer(args.path, host=args.host, port=args.port, max_gaussians=args.max_gaussians,
                                      capture=args.capture, stills_dir=args.stills_dir, up=args.up)
    try:
        shown = f"{scene.source}: {len(scene.gaussians):,} Gaussians"
        print(shown if scene.source == args.path else f"{args.path} -> newest .ply {shown}")
        if scene.message:
            print(scene.message)
        print(f"viewer running at {viewer.url}  (stills are saved in {args.stills_dir}/; Ctrl+C to stop)",
              flush=True)
        threading.Event().wait(args.seconds) if args.seconds is not None else threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        viewer.stop()


def register(commands: Commands) -> None:
    """Add `view` to the `splatforge` subcommands."""
    commands.add("view", "show a splat scene in the browser (viser), with exact CPU stills", _view_options, _cmd_view,
                 description="Serve PATH in a local viser viewer and print its URL. PATH is a splat file (.ply, "
                             ".splat, .spz, SOG) or a folder, of which the newest *.ply (by modification time, "
                             "searched recursively) is shown, e.g. a training output.")
