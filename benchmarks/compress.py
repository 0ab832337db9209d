"""Compression benchmark: size ratio against INRIA PLY, quality cost and time, per format, for a
trained degree-3 scene and for the garden points (degree 0).

    python benchmarks/compress.py                      # trained demo scene + garden points
    python benchmarks/compress.py --train-seconds 150  # ... trained within a time budget instead
    python benchmarks/compress.py --ply scene.ply [--capture DIR]   # your scene (and its photos)
    python benchmarks/compress.py --count 1000000      # garden points tiled to 1M: timing

The degree-3 scene is the one `splatforge demo` makes: its capture is rendered and the scene
trained with the demo's recipe on first use, both cached under out/bench/ and reused later. The
recipe is 3,000 steps (SH degree 3 from step 900), trained to the end by default: a time budget
(--train-seconds) that ends it earlier leaves a lower-degree scene, which the benchmark says.

Quality, two ways:
- "test dB" / "drop dB": the scene's PSNR on the capture's held-out test photos (the trainer's
  own evaluation) and how much of it the format loses (original PLY's minus decoded scene's).
  This is the figure users care about; it needs a capture (the demo scene has one).
- "vs orig dB": PSNR of the decoded scene's renders against the original scene's renders from
  8 orbit views (our rasterizer); any scene has it, and it is inf for a lossless format.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
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

REPO = Path(__file__).resolve().parents[1]
GARDEN = REPO / ".." / "shared" / "data" / "test_garden.npz"
BENCH_DIR = REPO / "out" / "bench"
# `splatforge demo`'s default training time budget (its --max-seconds).
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


def trained_demo_scene(train_seconds: float | None, bench_dir: Path = BENCH_DIR,
                       train_steps: int | None = None) -> tuple[Path, Path]:
    """(capture folder, trained PLY) of the demo scene, trained with `splatforge demo`'s recipe
    (all its steps, its schedule fitted to `train_steps` steps, or within `train_seconds`) on first
    use and cached under `bench_dir` (keyed by the budget) for later runs."""
    from splatforge.demo.capture import make_demo_capture
    from splatforge.train_cli import DEMO_TRAIN

    capture_dir = make_demo_capture(bench_dir / "demo_capture")
    if train_steps is not None:
        train_seconds = None
        train_dir = bench_dir / f"demo_train_{train_steps}steps"
    else:
        train_dir = bench_dir / ("demo_train_full" if train_seconds is None else f"demo_train_{train_seconds:g}s")
    ply = train_dir / "point_cloud.ply"
    if not ply.is_file():
        _train_demo(capture_dir, train_dir, train_seconds, train_steps)
    steps = json.loads((train_dir / "metrics.json").read_text()).get("steps", 0)
    if steps < (train_steps or DEMO_TRAIN["max_steps"]):
        print(f"note: the demo scene trained {steps} of {DEMO_TRAIN['max_steps']} steps in {train_seconds} s "
              f"(SH degree {min(3, steps // DEMO_TRAIN['sh_degree_interval'])} reached); a larger --train-seconds "
              "trains it fully", file=sys.stderr)
    return capture_dir, ply


def _train_demo(capture_dir: Path, train_dir: Path, train_seconds: float | None,
                train_steps: int | None = None) -> None:
    from splatforge.capture import load_capture
    from splatforge.train.run import RunOptions, run_training
    from splatforge.train.trainer import TrainConfig
    from splatforge.train_cli import DEMO_TRAIN

    budget = ("to the end" if train_seconds is None and train_steps is None
              else f"for {train_steps} steps" if train_steps else f"for up to {train_seconds:g} s")
    print(f"training the demo scene {budget} (cached in {train_dir}) ...", file=sys.stderr, flush=True)
    if train_dir.exists():  # an interrupted run: start over rather than resume with another budget
        shutil.rmtree(train_dir)
    recipe = {**DEMO_TRAIN, **({"max_steps": train_steps} if train_steps else {})}
    run_training(load_capture(capture_dir), train_dir, TrainConfig(**recipe),
                 RunOptions(max_seconds=train_seconds, progress=False, renders=False))


def size_of(path: Path) -> int:
    return sog_size(path) if path.suffix == ".sog" else os.path.getsize(path)


class TestViews:
    """A capture's held-out photos and the trainer's evaluation of a scene (in the capture's
    frame, as files hold it) against them: what `splatforge eval` reports."""

    def __init__(self, capture_dir: Path):
        from splatforge.capture import load_capture
        from splatforge.train.trainer import TrainConfig
        from splatforge.train_cli import DEMO_TRAIN

        self.capture = load_capture(capture_dir)
        if not self.capture.test:
            raise SystemExit(f"{capture_dir} has no held-out test views")
        self.config = TrainConfig(**DEMO_TRAIN)

    def psnr(self, g: Gaussians) -> float:
        from splatforge.train.trainer import evaluate, from_capture_frame

        scene = from_capture_frame(g, self.capture.normalization)
        with torch.no_grad():
            return evaluate(scene.as_dict(), self.capture.test, self.config, scene.sh_degree)["psnr"]


def bench_scene(name: str, g: Gaussians, views: int, width: int, height: int, out: Path,
                tests: TestViews | None = None) -> list[dict]:
    ply = out / f"{name}.ply"
    save_scene(g, ply)
    ply_size = os.path.getsize(ply)
    cams = orbit_cameras(g, views, width, height) if views else None
    reference = render_views(g, *cams, width, height) if views else None
    baseline = tests.psnr(g) if tests else float("nan")
    rows = [dict(scene=name, format="ply (INRIA)", n=len(g), deg=g.sh_degree, size=ply_size, ratio=1.0,
                 seconds=float("nan"), psnr=float("inf"), test=baseline, drop=0.0 if tests else float("nan"))]
    for fmt, ext in FORMATS:
        path = out / f"{name}{ext}"
        start = time.perf_counter()
        save_scene(g, path)
        seconds = time.perf_counter() - start
        value = test = float("nan")
        if views or tests:
            decoded = load_scene(path)
        if views:
            images = render_views(decoded, *cams, width, height)
            value = float(np.mean([psnr(images[i], reference[i]) for i in range(views)]))
        if tests:
            test = tests.psnr(decoded)
        rows.append(dict(scene=name, format=fmt, n=len(g), deg=g.sh_degree, size=size_of(path),
                         ratio=ply_size / size_of(path), seconds=seconds, psnr=value, test=test,
                         drop=baseline - test))
        print(f"  {name} {fmt}: {seconds:.1f} s", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ply", type=Path, help="a trained scene to use instead of the demo scene")
    ap.add_argument("--capture", type=Path, help="with --ply: its COLMAP capture, for test-view PSNR")
    ap.add_argument("--train-seconds", type=float, default=None,
                    help="time budget for training the demo scene (default: all of its 3,000 steps)")
    ap.add_argument("--garden", type=Path, default=GARDEN)
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
            scenes.append((f"garden{args.count // 1000}k", synthetic_scene(p, c, sh_degree=args.count_degree), None))
        else:
            if args.ply:
                scenes.append((args.ply.stem, load_scene(args.ply), TestViews(args.capture) if args.capture else None))
            else:
                capture_dir, ply = trained_demo_scene(args.train_seconds)
                scenes.append(("demo-d3", load_scene(ply), TestViews(capture_dir)))
            scenes.append(("garden", capture.to_gaussians(opacity=0.8), None))
        rows = []
        for name, g, tests in scenes:
            rows += bench_scene(name, g, args.views, args.width, args.height, out, tests)

    print(f"\n{'scene':<12}{'format':<15}{'N':>10}{'deg':>4}{'bytes':>13}{'vs PLY':>9}{'time s':>8}"
          f"{'test dB':>9}{'drop dB':>9}{'vs orig dB':>11}")
    for r in rows:
        print(f"{r['scene']:<12}{r['format']:<15}{r['n']:>10,}{r['deg']:>4}{r['size']:>13,}{r['ratio']:>8.1f}x"
              f"{r['seconds']:>8.1f}{r['test']:>9.2f}{r['drop']:>9.3f}{r['psnr']:>11.2f}")


if __name__ == "__main__":
    main()
