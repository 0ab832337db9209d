"""`splatforge compress`, `convert`, `filter` and `export-html`: thin calls into io.scene, compress,
io.filters and view.html.

compress and convert print the input and output sizes, their ratio and what the conversion cost in
pixels: PSNR / SSIM between renders of the input and of the decoded output from orbit views.
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


def _filter_options():
    import tyro

    from .io.filter_spec import SceneFilter

    @dataclass
    class FilterOptions:
        input: tyro.conf.Positional[Path]  # a .ply, .compressed.ply, .splat, .spz or SOG scene
        output: tyro.conf.Positional[Path]  # .ply, .compressed.ply, .splat, .spz or .sog (format by extension)
        spec: flattened(SceneFilter) = field(default_factory=SceneFilter)
        overwrite: bool = False  # replace OUTPUT if it exists

    return FilterOptions


def _cmd_filter(args) -> None:
    from . import compress  # noqa: F401  (registers the SOG writer with save_scene)
    from .io.filters import filter_file

    spec = args.spec
    size_in = _size_on_disk(Path(args.input)) if Path(args.input).exists() else 0  # before an in-place write
    start = time.perf_counter()
    original, kept = filter_file(args.input, args.output, spec, overwrite=args.overwrite)
    seconds = time.perf_counter() - start
    print(f"{args.input}: {len(original):,} Gaussians, {size_in:,} bytes")
    print(f"{args.output}: {len(kept):,} Gaussians ({100 * len(kept) / len(original):.1f}% kept), "
          f"{_size_on_disk(Path(args.output)):,} bytes ({seconds:.1f} s)")


def _export_html_options():
    import tyro

    from .view.scene import DEFAULT_MAX_GAUSSIANS

    @dataclass
    class ExportHtmlOptions:
        scene: tyro.conf.Positional[Path]  # a splat file (.ply, .splat, .spz, SOG) or a training folder
        # the page to write (.html), or a folder that gets an index.html
        output: Annotated[Path, tyro.conf.arg(aliases=("-o",))]
        # put at most this many Gaussians in the page, the most opaque and largest first (25-40 bytes each)
        max_gaussians: int = DEFAULT_MAX_GAUSSIANS
        up: Literal["+z", "-z", "+y", "-y", "+x", "-x"] = "+z"  # world up axis for the orbit controls
        dark_mode: bool = False  # dark background instead of white
        overwrite: bool = False  # replace the page if it exists

    return ExportHtmlOptions


def _cmd_export_html(args) -> None:
    from .view.html import export_scene_html

    start = time.perf_counter()
    page, scene = export_scene_html(args.scene, args.output, max_gaussians=args.max_gaussians, up=args.up,
                                    dark_mode=args.dark_mode, overwrite=args.overwrite)
    if scene.message:
        print(scene.message)
    print(f"{page}: {os.path.getsize(page):,} bytes, {len(scene.gaussians):,} Gaussians from {scene.source} "
          f"({time.perf_counter() - start:.1f} s); open it in a browser, offline or from any static host")


def register(commands: Commands) -> None:
    """Add `compress`, `convert`, `filter` and `export-html` to the `splatforge` subcommands."""
    commands.add("compress", "compress a splat scene to SOG (Morton or PLAS layout, k-means codebooks)",
                 _compress_options, _cmd_compress)
    commands.add("convert", "convert between splat formats (by extension)", _convert_options, _cmd_convert)
    commands.add("filter", "crop, clean or decimate a splat scene (box, sphere, opacity, size, count)",
                 _filter_options, _cmd_filter,
                 description="Read INPUT, keep the Gaussians every given filter keeps (applied in the order box, "
                             "sphere, opacity, size, decimation) and write OUTPUT in the format its extension "
                             "names. A filter that keeps nothing, or an existing OUTPUT without --overwrite, is "
                             "an error and writes nothing.")
    commands.add("export-html", "write a splat scene as one offline web page with orbit controls (viser)",
                 _export_html_options, _cmd_export_html,
                 description="Write SCENE as a self-contained HTML page (viser's web client with the scene "
                             "embedded): it opens from the file system or any static host and fetches nothing.")
