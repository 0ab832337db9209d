"""`splatforge` command line: one thin subcommand per job, each a call into the library.

The dispatcher here only knows the subcommands' names and one-line help. Each area has a module
with `register(commands)` that adds its subcommands (see `splatforge._cli_util.Commands.add`);
a command's options are a dataclass that tyro turns into flags, built only when that command
runs. To add an area, write `splatforge/NAME_cli.py` with a `register(commands)` and list
"NAME_cli" in COMMAND_MODULES.
"""

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Optional, Sequence

from ._cli_util import PROG, Command, Commands, flattened, parse_options, run_command

COMMAND_MODULES = ["cli", "train_cli", "view_cli", "serve_cli", "predict_cli", "ship_cli", "capture_cli", "generate_cli"]
DESCRIPTION = "Gaussian splatting on any machine."


def register(commands: Commands) -> None:
    """`info`, `fit` and `fit-render`."""
    commands.add("info", "describe a splat PLY: count, SH degree, bounds, size", _info_options, _cmd_info)
    commands.add("fit", "represent an image with N 2D Gaussians", _fit_options, _cmd_fit)
    commands.add("fit-render", "re-render a saved fit at another resolution", _fit_render_options, _cmd_fit_render)


def _info_options():
    import tyro

    @dataclass
    class InfoOptions:
        file: tyro.conf.Positional[Path]  # a splat PLY

    return InfoOptions


def _cmd_info(opts) -> None:
    from .io.ply import describe_ply, format_description

    print(format_description(describe_ply(opts.file)))


def _fit_options():
    import tyro

    from .fit2d import FitConfig

    @dataclass
    class FitOptions:
        image: tyro.conf.Positional[Path]  # the image to represent
        output: Annotated[Path, tyro.conf.arg(aliases=("-o",))] = Path("out/fit")  # output folder
        render_scale: float = 1.0  # also re-render the fit at this many times its size (resolution-free)
        quiet: bool = False  # no progress bar
        config: flattened(FitConfig) = field(default_factory=FitConfig)

    return FitOptions


def _cmd_fit(opts) -> None:
    from .core.images import load_image, save_image
    from .fit2d import fit_image, render_fit, save_fit

    cfg = opts.config
    target = load_image(opts.image, max_pixels=cfg.max_pixels)
    result = fit_image(target, config=cfg, progress=not opts.quiet)
    paths = save_fit(result, opts.output, target=target)
    m = result.metrics
    print(f"{m['num_gaussians']:,} Gaussians, {m['steps']} steps on {m['width']}x{m['height']}: "
          f"PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}, {m['seconds']:.2f} s ({m['steps_per_second']:.0f} steps/s)")
    if opts.render_scale != 1.0:
        scaled = render_fit(opts.output, scale=opts.render_scale)
        paths["scaled"] = save_image(Path(opts.output) / f"render_x{opts.render_scale:g}.png", scaled)
    for name, path in paths.items():
        print(f"  {name}: {path}")


def _fit_render_options():
    import tyro

    @dataclass
    class FitRenderOptions:
        fit: tyro.conf.Positional[Path]  # a fit's output folder or its gaussians.npz
        scale: float = 2.0  # times the fitted image's size
        output: Annotated[Path, tyro.conf.arg(aliases=("-o",))] = Path("out/fit/render_scaled.png")  # PNG to write

    return FitRenderOptions


def _cmd_fit_render(opts) -> None:
    from .core.images import save_image
    from .fit2d import render_fit

    image = render_fit(opts.fit, scale=opts.scale)
    path = save_image(opts.output, image)
    print(f"{path}: {image.shape[1]}x{image.shape[0]}")


def build_commands(modules: Sequence[str] = tuple(COMMAND_MODULES)) -> Commands:
    """Every subcommand, from each module's `register(commands)`, in COMMAND_MODULES order."""
    import importlib

    commands = Commands()
    for name in modules:
        importlib.import_module(f"splatforge.{name}").register(commands)
    return commands


def format_help(commands: Commands) -> str:
    width = max(len(c.name) for c in commands) + 2
    lines = [f"usage: {PROG} [-h] COMMAND [OPTIONS ...]", "", DESCRIPTION, "", "commands:"]
    lines += [f"  {c.name:<{width}}{c.help}" for c in commands]
    lines += ["", f"`{PROG} COMMAND --help` lists a command's options."]
    return "\n".join(lines)


def find_command(commands: Commands, argv: Sequence[str]) -> tuple[Optional[Command], int]:
    """The command `argv` names, or (None, exit status) after printing the top-level help
    (status 0 for --help, 2 for a missing or unknown command)."""
    if argv and argv[0] in commands:
        return commands[argv[0]], 0
    if argv and argv[0] in ("-h", "--help"):
        print(format_help(commands))
        return None, 0
    print(format_help(commands), file=sys.stderr)
    problem = f"unknown command {argv[0]!r}" if argv else "a command is required"
    print(f"\n{PROG}: error: {problem}", file=sys.stderr)
    return None, 2


def parse_command_line(argv: Sequence[str], commands: Optional[Commands] = None):
    """(command, options) for a full command line (without the leading `splatforge`), without running
    it: what the README test checks. Unknown commands and bad options raise SystemExit(2)."""
    commands = commands or build_commands()
    command, status = find_command(commands, argv)
    if command is None:
        raise SystemExit(status)
    return command, parse_options(command, argv[1:])


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = build_commands()
    command, status = find_command(commands, argv)
    if command is None:
        return status
    return run_command(command, argv[1:])


if __name__ == "__main__":
    sys.exit(main())
