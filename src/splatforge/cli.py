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


def _cmd_fit(args: argparse.Namespace) -> None:
    from dataclasses import fields

    from .core.images import load_image, save_image
    from .fit2d import FitConfig, fit_image, render_fit, save_fit

    cfg = FitConfig(**{f.name: getattr(args, f.name) for f in fields(FitConfig)})
    target = load_image(args.image, max_pixels=cfg.max_pixels)
    result = fit_image(target, config=cfg, progress=not args.quiet)
    paths = save_fit(result, args.output, target=target)
    m = result.metrics
    print(f"{m['num_gaussians']:,} Gaussians, {m['steps']} steps on {m['width']}x{m['height']}: "
          f"PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}, {m['seconds']:.2f} s ({m['steps_per_second']:.0f} steps/s)")
    if args.render_scale != 1.0:
        scaled = render_fit(args.output, scale=args.render_scale)
        paths["scaled"] = save_image(Path(args.output) / f"render_x{args.render_scale:g}.png", scaled)
    for name, path in paths.items():
        print(f"  {name}: {path}")


def _cmd_fit_render(args: argparse.Namespace) -> None:
    from .core.images import save_image
    from .fit2d import render_fit

    image = render_fit(args.fit, scale=args.scale)
    path = save_image(args.output, image)
    print(f"{path}: {image.shape[1]}x{image.shape[0]}")


def _add_dataclass_options(parser: argparse.ArgumentParser, cls) -> None:
    """One --option per dataclass field, typed and defaulted from the field, help from its comment."""
    import inspect
    from dataclasses import MISSING, fields

    comments = {}
    for line in inspect.getsource(cls).splitlines():
        name, _, rest = line.strip().partition(":")
        if "#" in rest and name.isidentifier():
            comments[name] = rest.split("#", 1)[1].strip()
    for f in fields(cls):
        default = f.default if f.default is not MISSING else None
        flag = "--" + f.name.replace("_", "-")
        parser.add_argument(flag, dest=f.name, type=type(default), default=default,
                            help=f"{comments.get(f.name, '')} (default: {default})")


def _add_fit(sub) -> None:
    from .fit2d import FitConfig

    p = sub.add_parser("fit", help="represent an image with N 2D Gaussians")
    p.add_argument("image", type=Path)
    p.add_argument("-o", "--output", type=Path, default=Path("out/fit"))
    p.add_argument("--render-scale", type=float, default=1.0,
                   help="also re-render the fit at this many times its size (resolution-free)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_dataclass_options(p, FitConfig)
    p.set_defaults(func=_cmd_fit)
    r = sub.add_parser("fit-render", help="re-render a saved fit at another resolution")
    r.add_argument("fit", type=Path, help="a fit's output folder or its gaussians.npz")
    r.add_argument("--scale", type=float, default=2.0)
    r.add_argument("-o", "--output", type=Path, default=Path("out/fit/render_scaled.png"))
    r.set_defaults(func=_cmd_fit_render)


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


COMMANDS: list[Callable] = [_add_info, _add_render, _add_fit]


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
