"""`splatforge compress` and `splatforge convert`: thin calls into io.scene and compress.

Both print the input and output sizes, their ratio and what the conversion cost in pixels: PSNR /
SSIM between renders of the input and of the decoded output from orbit views.
"""

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Optional

from ._cli_util import Commands, flattened
from .errors import SplatforgeError

# splatforge.io.scene.FORMATS, spelled out so that `convert --help` does not import the readers
# (torch); a test keeps the two equal
SceneFormat = Literal["ply", "compressed-ply", "splat", "spz", "sog"]


@dataclass
class QualityCheck:
    """The PSNR / SSIM check of the written file against the input (renders of orbit views)."""

    views: int = 8  # orbit views for PSNR/SSIM (0 skips the check)
    width: int = 320  # render width for the quality check
    height: int = 240  # render height for the quality check


def _size_on_disk(path: Path) -> int:
    from .io.formats.sog import sog_size
    from .io.scene import format_from_extension

    if path.is_dir() or format_from_extension(path) == "sog":
        return sog_size(path)
    return os.path.getsize(path)


def _report(args, original, output: Path, seconds: float) -> None:
    from .compress.quality import compare_scenes
    from .io.scene import load_scene

    size_in, size_out = _size_on_disk(Path(args.input)), _size_on_disk(output)
    print(f"{args.input}: {size_in:,} bytes, {len(original):,} Gaussians, SH degree {original.sh_degree}")
    print(f"{output}: {size_out:,} bytes ({seconds:.1f} s)")
    print(f"ratio {size_in / max(size_out, 1):.2f}x smaller")
    check = args.quality
    if check.views > 0:
        decoded = load_scene(output)
        q = compare_scenes(original, decoded, n_views=check.views, width=check.width, height=check.height)
        print(f"quality: PSNR {q.psnr:.2f} dB, SSIM {q.ssim:.4f} (decoded vs input, {q.views} orbit views "
              f"at {q.width}x{q.height})")


def _compress_options():
    import tyro

    from .compress.sog import SogConfig

    @dataclass
    class CompressOptions:
        input: tyro.conf.Positional[Path]  # a .ply, .compressed.ply, .splat, .spz or SOG scene
        output: Annotated[Path, tyro.conf.arg(aliases=("-o",))]  # OUT.sog (zip) or a folder for meta.json
        sog: flattened(SogConfig) = field(default_factory=SogConfig)
        quality: flattened(QualityCheck) = field(default_factory=QualityCheck)

    return CompressOptions


def _cmd_compress(args) -> None:
    from .compress.sog import compress_scene
    from .io.scene import load_scene

    output = Path(args.output)
    if output.suffix.lower() != ".sog" and not output.name.endswith("meta.json") and output.suffix:
        raise SplatforgeError(f"{output}: compress writes SOG; name the output .sog (a zip) or a folder")
    original = load_scene(args.input)
    start = time.perf_counter()
    compress_scene(original, output, args.sog)
    _report(args, original, output, time.perf_counter() - start)


def _convert_options():
    import tyro

    @dataclass
    class ConvertOptions:
        input: tyro.conf.Positional[Path]  # a .ply, .compressed.ply, .splat, .spz or SOG scene
        output: tyro.conf.Positional[Path]  # .ply, .compressed.ply, .splat, .spz, .sog or a SOG folder
        format: Optional[SceneFormat] = None  # output format (default: from the extension)
        # SPZ version to write: 3 (gzip, every reader) or 4 (zstd, spz 2026+, splat-transform 3.7+)
        spz_version: Literal[3, 4] = 3
        quality: flattened(QualityCheck) = field(default_factory=QualityCheck)

    return ConvertOptions


def _cmd_convert(args) -> None:
    from . import compress  # noqa: F401  (registers the SOG writer with save_scene)
    from .io.scene import load_scene, save_scene

    original = load_scene(args.input)
    start = time.perf_counter()
    if args.spz_version != 3:
        from .io.formats.spz import write_spz
        from .io.scene import format_from_extension

        if (args.format or format_from_extension(args.output)) != "spz":
            raise SplatforgeError("--spz-version applies to SPZ output (.spz) only")
        write_spz(args.output, original, version=args.spz_version)
    else:
        save_scene(original, args.output, format=args.format)
    _report(args, original, Path(args.output), time.perf_counter() - start)


def register(commands: Commands) -> None:
    """Add `compress` and `convert` to the `splatforge` subcommands."""
    commands.add("compress", "compress a splat scene to SOG (PLAS layout, k-means codebooks)",
                 _compress_options, _cmd_compress)
    commands.add("convert", "convert between splat formats (by extension)", _convert_options, _cmd_convert)
