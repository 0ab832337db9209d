"""Compression benchmark: size ratio against INRIA PLY, PSNR against the original's renders,
and time, per format, for a degree-3 scene and for the garden points (degree 0).

    python benchmarks/compress.py                      # synthetic degree-3 scene + garden points
    python benchmarks/compress.py --ply trained.ply    # a trained scene instead of the synthetic one
    python benchmarks/compress.py --count 1000000      # garden points tiled to 1M Gaussians

PSNR is of the decoded scene's renders against the original scene's renders (8 orbit views, our
rasterizer). "drop@27" converts it to the PSNR drop a scene rendering at 27 dB against its
photos would see if the compression error adds independently (27 dB is a typical 3DGS score).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from splatforge.compress.quality import orbit_cameras, render_views
from splatforge.core.gaussians import Gaussians
from splatforge.core.metrics import psnr
from splatforge.io.formats.sog import sog_size
from splatforge.io.points_capture import load_point_capture
from splatforge.io.scene import load_scene, save_scene

GARDEN = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "test_garden.npz"
FORMATS = [("compressed-ply", ".compressed.ply"), ("splat", ".splat"), ("spz", ".spz"), ("sog", ".sog")]


def tiled_points(points: np.ndarray, colors: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` points: the originals, then jittered copies (by ~the local spacing)."""
    rng = np.random.default_rng(seed)
    n = len(points)
    idx = np.concatenate([np.arange(n), rng.integers(0, n, max(0, count - n))])[:count]
    spread = np.median(np.abs(np.diff(np.sort(points[:, 0])))) * 50 + 1e-3
    jitter = rng.normal(0, spread, (count, 3)).astype(np.float32)
    jitter[: min(n, count)] = 0
    return points[idx] + jitter, colors[idx]


def synthetic_scene(points: np.ndarray, colors: np.ndarray, sh_degree: int, seed: int = 0) -> Gaussians:
    """Gaussians at the points with anisotropic scales, rotations, opacities and SH coefficients
    that all vary smoothly with position (as a trained scene's do, more or less)."""
    g = Gaussians.from_points(points, colors, sh_degree=sh_degree, opacity=0.6)
    p = g.means.double()
    p = (p - p.median(0).values) / p.std(0)
    rng = np.random.default_rng(seed)

    def field(channels: int, freq: float) -> torch.Tensor:
        w = torch.from_numpy(rng.normal(0, freq, (3, channels)))
        phase = torch.from_numpy(rng.uniform(0, 2 * math.pi, channels))
        return torch.sin(p @ w + phase)

    scales = g.scales + 0.4 * field(3, 1.5).float()
    quats = torch.cat([torch.ones(len(g), 1, dtype=torch.float64), 0.6 * field(3, 1.0)], 1).float()
    opacities = 1.0 + 1.5 * field(1, 1.0)[:, 0].float()
    k = g.shN.shape[1]
    shn = (0.25 * field(3 * k, 1.2)).float().reshape(len(g), k, 3) / (1 + torch.arange(k).float()[None, :, None] / 3)
    return Gaussians(g.means, scales, quats, opacities, g.sh0, shn)


def size_of(path: Path) -> int:
    return sog_size(path) if path.suffix == ".sog" else os.path.getsize(path)


def bench_scene(name: str, g: Gaussians, views: int, width: int, height: int, out: Path) -> list[dict]:
    ply = out / f"{name}.ply"
    save_scene(g, ply)
    ply_size = os.path.getsize(ply)
    cams = orbit_cameras(g, views, width, height) if views else None
    reference = render_views(g, *cams, width, height) if views else None
    rows = [dict(scene=name, format="ply (INRIA)", n=len(g), deg=g.sh_degree, size=ply_size, ratio=1.0,
                 seconds=float("nan"), psnr=float("inf"))]
    for fmt, ext in FORMATS:
        path = out / f"{name}{ext}"
        start = time.perf_counter()
        save_scene(g, path)
        seconds = time.perf_counter() - start
        value = float("nan")
        if views:
            decoded = load_scene(path)
            images = render_views(decoded, *cams, width, height)
            value = float(np.mean([psnr(images[i], reference[i]) for i in range(views)]))
        rows.append(dict(scene=name, format=fmt, n=len(g), deg=g.sh_degree, size=size_of(path),
                         ratio=ply_size / size_of(path), seconds=seconds, psnr=value))
        print(f"  {name} {fmt}: {seconds:.1f} s", file=sys.stderr, flush=True)
    return rows


def drop_at(baseline_db: float, psnr_vs_original: float) -> float:
    if math.isnan(psnr_vs_original):
        return float("nan")
    if math.isinf(psnr_vs_original):
        return 0.0
    mse = 10 ** (-baseline_db / 10) + 10 ** (-psnr_vs_original / 10)
    return baseline_db + 10 * math.log10(mse)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ply", type=Path, help="a trained scene to use instead of the synthetic degree-3 one")
    ap.add_argument("--garden", type=Path, default=GARDEN)
    ap.add_argument("--gaussians", type=int, default=200_000, help="size of the synthetic degree-3 scene")
    ap.add_argument("--count", type=int, default=0, help="only bench the garden points tiled to this many")
    ap.add_argument("--count-degree", type=int, default=0, help="SH degree of the --count scene")
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--out", type=Path, default=None, help="folder for the files (default: a temporary one)")
    args = ap.parse_args()

    capture = load_point_capture(args.garden)
    pts, cols = capture.points.numpy(), capture.colors.numpy()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        scenes = []
        if args.count:
            p, c = tiled_points(pts, cols, args.count, seed=1)
            scenes.append((f"garden{args.count // 1000}k", synthetic_scene(p, c, sh_degree=args.count_degree)))
        else:
            if args.ply:
                scenes.append((args.ply.stem, load_scene(args.ply)))
            else:
                p, c = tiled_points(pts, cols, args.gaussians, seed=0)
                scenes.append(("synthetic-d3", synthetic_scene(p, c, sh_degree=3)))
            scenes.append(("garden", capture.to_gaussians(opacity=0.8)))
        rows = []
        for name, g in scenes:
            rows += bench_scene(name, g, args.views, args.width, args.height, out)

    print(f"\n{'scene':<14}{'format':<16}{'N':>10}{'deg':>4}{'bytes':>13}{'vs PLY':>9}{'time s':>8}"
          f"{'PSNR dB':>9}{'drop@27':>9}")
    for r in rows:
        print(f"{r['scene']:<14}{r['format']:<16}{r['n']:>10,}{r['deg']:>4}{r['size']:>13,}{r['ratio']:>8.1f}x"
              f"{r['seconds']:>8.1f}{r['psnr']:>9.2f}{drop_at(27.0, r['psnr']):>9.3f}")


if __name__ == "__main__":
    main()
