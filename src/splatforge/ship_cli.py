"""`splatforge compress` and `splatforge convert`: thin calls into io.scene and compress.

Both print the input and output sizes, their ratio and what the conversion cost in pixels: PSNR /
SSIM between renders of the input and of the decoded output from orbit views.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from .errors import SplatforgeError


def _size_on_disk(path: Path) -> int:
    from .io.formats.sog import sog_size
    from .io.scene import format_from_extension

    if path.is_dir() or format_from_extension(path) == "sog":
        return sog_size(path)
    return os.path.getsize(path)


def _report(args: argparse.Namespace, original, output: Path, seconds: float) -> None:
    from .compress.quality import compare_scenes
    from .io.scene import load_scene

    size_in, size_out = _size_on_disk(Path(args.input)), _size_on_disk(output)
    print(f"{args.input}: {size_in:,} bytes, {len(original):,} Gaussians, SH degree {original.sh_degree}")
    print(f"{output}: {size_out:,} bytes ({seconds:.1f} s)")
    print(f"ratio {size_in / max(size_out, 1):.2f}x smaller")
    if args.views > 0:
        decoded = load_scene(output)
        q = compare_scenes(original, decoded, n_views=args.views, width=args.width, height=args.height)
        print(f"quality: PSNR {q.psnr:.2f} dB, SSIM {q.ssim:.4f} (decoded vs input, {q.views} orbit views "
              f"at {q.width}x{q.height})")


def _cmd_compress(args: argparse.Namespace) -> None:
    from .compress.sog import SogConfig, compress_scene
    from .io.scene import load_scene

    output = Path(args.output)
    if output.suffix.lower() != ".sog" and not output.name.endswith("meta.json") and output.suffix:
        raise SplatforgeError(f"{output}: compress writes SOG; name the output .sog (a zip) or a folder")
    original = load_scene(args.input)
    start = time.perf_counter()
    compress_scene(original, output, SogConfig(sort=args.sort, plas_iterations=args.plas_iterations,
                                               palette_size=args.palette_size,
                                               kmeans_iterations=args.kmeans_iterations,
                                               webp_method=args.webp_method,
                                               position_slack=args.position_slack, seed=args.seed))
    _report(args, original, output, time.perf_counter() - start)


def _cmd_convert(args: argparse.Namespace) -> None:
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


def _quality_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--views", type=int, default=8, help="orbit views for PSNR/SSIM (0 skips the check)")
    p.add_argument("--width", type=int, default=320, help="render width for the quality check")
    p.add_argument("--height", type=int, default=240, help="render height for the quality check")


def register(subparsers) -> None:
    """Add `compress` and `convert` to the `splatforge` command's subparsers."""
    from .compress.sog import SogConfig
    from .io.scene import FORMATS

    p = subparsers.add_parser("compress", help="compress a splat scene to SOG (PLAS layout, k-means codebooks)")
    p.add_argument("input", type=Path, help="a .ply, .compressed.ply, .splat, .spz or SOG scene")
    p.add_argument("-o", "--output", type=Path, required=True, help="OUT.sog (zip) or a folder for meta.json")
    p.add_argument("--sort", choices=["plas", "morton"], default="plas", help="texel layout")
    p.add_argument("--plas-iterations", type=int, default=SogConfig.plas_iterations,
                   help="PLAS passes per tile size: more sorts better (smaller files), slower")
    p.add_argument("--palette-size", type=int, default=SogConfig.palette_size,
                   help="SH palette entries (0: automatic, scaled to the number of Gaussians)")
    p.add_argument("--kmeans-iterations", type=int, default=SogConfig.kmeans_iterations)
    p.add_argument("--webp-method", type=int, default=SogConfig.webp_method, choices=range(7),
                   help="WebP effort 0-6")
    p.add_argument("--position-slack", type=float, default=SogConfig.position_slack,
                   help="how far Gaussians may move, as a fraction of their smallest size (0: exact 16-bit)")
    p.add_argument("--seed", type=int, default=SogConfig.seed)
    _quality_options(p)
    p.set_defaults(func=_cmd_compress)

    c = subparsers.add_parser("convert", help="convert between splat formats (by extension)")
    c.add_argument("input", type=Path)
    c.add_argument("output", type=Path, help=".ply, .compressed.ply, .splat, .spz, .sog or a SOG folder")
    c.add_argument("--format", choices=FORMATS, default=None, help="output format (default: from the extension)")
    c.add_argument("--spz-version", type=int, choices=(3, 4), default=3,
                   help="SPZ version to write: 3 (gzip, every reader) or 4 (zstd, spz 2026+, splat-transform 3.7+)")
    _quality_options(c)
    c.set_defaults(func=_cmd_convert)
