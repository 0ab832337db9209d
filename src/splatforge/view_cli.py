"""`splatforge view`: serve a splat scene (or a training folder's newest .ply) in the browser."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from splatforge.errors import SplatforgeError


def _cmd_view(args: argparse.Namespace) -> None:
    from splatforge.view import open_scene_viewer
    from splatforge.view.viewer import UP_DIRECTIONS

    if args.max_gaussians < 1:
        raise SplatforgeError(f"--max-gaussians must be >= 1, got {args.max_gaussians}")
    if args.up not in UP_DIRECTIONS:
        raise SplatforgeError(f"--up must be one of {UP_DIRECTIONS}, got {args.up!r}")
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


def register(subparsers) -> None:
    """Add `view` to the `splatforge` subcommands."""
    from splatforge.view.scene import DEFAULT_MAX_GAUSSIANS

    p = subparsers.add_parser(
        "view", help="show a splat scene in the browser (viser), with exact CPU stills",
        description="Serve PATH in a local viser viewer and print its URL. PATH is a splat file (.ply; "
                    ".splat/.spz/SOG when splatforge.io.scene is installed) or a folder, of which the newest "
                    "*.ply (by modification time, searched recursively) is shown, e.g. a training output.")
    p.add_argument("path", type=Path)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on; 0 picks a free one")
    p.add_argument("--max-gaussians", type=int, default=DEFAULT_MAX_GAUSSIANS,
                   help="send at most this many Gaussians to the browser, the most opaque and largest first")
    p.add_argument("--capture", type=Path, default=None,
                   help="a COLMAP capture folder (sparse/0 + images): show its cameras as frustums with thumbnails")
    p.add_argument("--stills-dir", type=Path, default=Path("stills"), help="where 'Save PNG' writes stills")
    p.add_argument("--up", default="+z", help="world up axis for the orbit controls: +z, -y, +y, ...")
    p.add_argument("--seconds", type=float, default=None,
                   help="stop after this many seconds (default: run until Ctrl+C)")
    p.set_defaults(func=_cmd_view)
