"""`splatforge` command line: one thin subcommand per job, each a call into the library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional

from .errors import SplatforgeError


def _cmd_info(args: argparse.Namespace) -> None:
    from .io.ply import describe_ply, format_description

    print(format_description(describe_ply(args.file)))


def _cmd_render(args: argparse.Namespace) -> None:
    import time

    from .io.points_capture import load_point_capture
    from .render.stills import render_views

    start = time.perf_counter()
    capture = load_point_capture(args.capture)
    gaussians = capture.to_gaussians(opacity=args.opacity)
    setup_s = time.perf_counter() - start
    report = render_views(gaussians, capture.viewmats, capture.Ks, capture.width, capture.height, args.output,
                          backend=args.backend)
    print(f"{len(gaussians):,} Gaussians from {args.capture} (points to Gaussians: {setup_s:.2f} s)")
    for path, ms in zip(report.paths, report.milliseconds):
        print(f"  {path}  {capture.width}x{capture.height}  {ms:.1f} ms")
    mean = sum(report.milliseconds) / len(report.milliseconds)
    print(f"mean render time {mean:.1f} ms per view ({args.backend} backend)")


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="describe a splat PLY: count, SH degree, bounds, size")
    p.add_argument("file", type=Path)
    p.set_defaults(func=_cmd_info)


def _add_render(sub) -> None:
    p = sub.add_parser("render", help="render a point capture (.npz: points, colours, cameras) to PNGs")
    p.add_argument("capture", type=Path, help="a .npz with means3d, colors, viewmats, Ks, width, height")
    p.add_argument("-o", "--output", type=Path, default=Path("out/render"))
    p.add_argument("--opacity", type=float, default=0.8, help="opacity of every point's Gaussian")
    p.add_argument("--backend", default="auto", choices=["auto", "cpu", "torch", "gsplat"])
    p.set_defaults(func=_cmd_render)


COMMANDS: list[Callable] = [_add_info, _add_render]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="splatforge", description="Gaussian splatting on any machine.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except SplatforgeError as exc:
        print(f"splatforge {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
