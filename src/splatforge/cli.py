"""`splatforge` command line: one thin subcommand per job, each a call into the library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional

from ._cli_util import add_dataclass_options, dataclass_from_args
from .errors import SplatforgeError


def _cmd_info(args: argparse.Namespace) -> None:
    from .io.ply import describe_ply, format_description

    print(format_description(describe_ply(args.file)))


def _cmd_fit(args: argparse.Namespace) -> None:
    from .core.images import load_image, save_image
    from .fit2d import FitConfig, fit_image, render_fit, save_fit

    cfg = dataclass_from_args(FitConfig, args)
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


def _add_fit(sub) -> None:
    from .fit2d import FitConfig

    p = sub.add_parser("fit", help="represent an image with N 2D Gaussians")
    p.add_argument("image", type=Path)
    p.add_argument("-o", "--output", type=Path, default=Path("out/fit"))
    p.add_argument("--render-scale", type=float, default=1.0,
                   help="also re-render the fit at this many times its size (resolution-free)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_dataclass_options(p, FitConfig)
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


def _add_modules(sub) -> None:
    """Subcommands that live beside the code they drive, each module with a `register(subparsers)`."""
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(f"splatforge.{name}").register(sub)


COMMAND_MODULES = ["train_cli", "view_cli", "serve_cli", "predict_cli", "ship_cli"]
COMMANDS: list[Callable] = [_add_info, _add_fit, _add_modules]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="splatforge", description="Gaussian splatting on any machine.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    return run(build_parser(), argv)


def run(parser: argparse.ArgumentParser, argv: Optional[list[str]] = None) -> int:
    """Parse `argv` with `parser` and run the chosen subcommand; user errors exit with status 2."""
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except SplatforgeError as exc:
        print(f"splatforge {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
