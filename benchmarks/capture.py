"""Capture loading: seconds to load the demo capture and a phone-like set of 12 MP JPEGs, and how the
starting points of a capture without any (triangulated with fixed poses, random in the common view)
score on held-out views after a short training run.

    python benchmarks/capture.py load [--photos 50]
    python benchmarks/capture.py init [--steps 1500]

`load` compares load_capture (long side 1000, JPEG reduced-size decoding, all cores) with the
reference of decoding every photo at full size and resizing it (core.images.load_image + Lanczos).
`init` makes the demo capture as a Blender scene (no points) and trains from each start; the COLMAP
capture's own SfM points are the reference.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _phone_set(root: Path, count: int) -> Path:
    """`count` 4032x3024 JPEGs (every third one portrait by EXIF) and a transforms.json."""
    from PIL import Image

    rng = np.random.default_rng(0)
    base = Image.fromarray((rng.random((378, 504, 3)) * 255).astype(np.uint8)).resize((4032, 3024), Image.BILINEAR)
    frames = []
    for i in range(count):
        exif = Image.Exif()
        exif[0x0112] = 6 if i % 3 == 2 else 1
        base.save(root / f"IMG_{i:04d}.jpg", quality=90, exif=exif)
        w, h = (3024, 4032) if i % 3 == 2 else (4032, 3024)
        c2w = np.eye(4)
        c2w[:3, 3] = [np.cos(i / count * 6.28), np.sin(i / count * 6.28), 0.0]
        frames.append({"file_path": f"IMG_{i:04d}.jpg", "w": w, "h": h, "fl_x": 3000.0, "fl_y": 3000.0,
                       "cx": w / 2, "cy": h / 2, "transform_matrix": c2w.tolist()})
    (root / "transforms.json").write_text(json.dumps({"camera_model": "PINHOLE", "frames": frames}))
    return root


def bench_load(photos: int) -> None:
    from PIL import Image

    from splatforge.capture import load_capture
    from splatforge.core.images import load_image
    from splatforge.demo.capture import make_demo_capture

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        demo = make_demo_capture(Path(tmp) / "demo", num_views=48, width=256, height=256)
        start = time.perf_counter()
        cap = load_capture(demo)
        rows.append(("demo capture, 48 x 256x256 PNG (COLMAP)", time.perf_counter() - start, None, len(cap.train)))
        (Path(tmp) / "phone").mkdir()
        phone = _phone_set(Path(tmp) / "phone", photos)
        start = time.perf_counter()
        cap = load_capture(phone, init="none")
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        for path in sorted(phone.glob("*.jpg")):  # the reference: full decode, then resize
            full = load_image(path)
            h, w = full.shape[:2]
            Image.fromarray((full * 255 + 0.5).astype(np.uint8)).resize((round(w / 5), round(h / 5)), Image.LANCZOS)
        reference = time.perf_counter() - start
        shapes = sorted({v.image.shape[:2] for v in cap.train + cap.test})
        rows.append((f"{photos} x 12 MP JPEG -> {shapes} (transforms.json)", seconds, reference,
                     len(cap.train) + len(cap.test)))
    print(f"\n{'capture':<62} {'seconds':>8} {'reference':>10} {'ratio':>6}")
    for name, seconds, reference, _ in rows:
        ref = f"{reference:10.2f}" if reference else f"{'':>10}"
        ratio = f"{reference / seconds:6.1f}" if reference else ""
        print(f"{name:<62} {seconds:8.2f} {ref} {ratio}")


def _train_and_score(capture, steps: int) -> tuple[float, int, float]:
    from splatforge.train.trainer import TrainConfig, Trainer

    cfg = TrainConfig(max_steps=steps, sh_degree_interval=max(1, steps // 10), refine_start_iter=steps // 15,
                      refine_every=100, refine_stop_iter=int(steps * 0.83), reset_every=steps // 2)
    trainer = Trainer(capture, cfg)
    start = time.perf_counter()
    while trainer.step < steps:
        trainer.train_step()
    return trainer.evaluate()["psnr"], trainer.num_gaussians, time.perf_counter() - start


def bench_init_points(steps: int, views: int, size: int) -> None:
    from dataclasses import replace

    from capture.conftest import write_blender

    from splatforge.capture import load_capture, with_initial_points
    from splatforge.capture.init_points import _capture_frame_viewmats
    from splatforge.capture.triangulate import triangulate_known_poses
    from splatforge.demo.capture import make_demo_capture

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        demo = make_demo_capture(Path(tmp) / "demo", num_views=views, width=size, height=size)
        bare = load_capture(write_blender(demo, Path(tmp) / "blender"), init="none")
        start = time.perf_counter()
        # min_points=1: load_capture refuses fewer than 100 points and falls back to random; here we
        # want to see how the few there are do
        points, colors = triangulate_known_poses([v.image for v in bare.train], np.stack([v.K for v in bare.train]),
                                                 _capture_frame_viewmats(bare, bare.train), min_points=1,
                                                 progress=False)
        norm = bare.normalization
        triangulated = replace(bare, points=points @ norm[:3, :3].T + norm[:3, 3], colors=colors)
        tri_seconds = time.perf_counter() - start
        start = time.perf_counter()
        random = with_initial_points(bare, "random")
        random_seconds = time.perf_counter() - start
        for name, capture, seconds in (("SfM points of the COLMAP capture (reference)", load_capture(demo), 0.0),
                                       ("triangulated, poses fixed", triangulated, tri_seconds),
                                       ("random in the common view volume", random, random_seconds)):
            psnr, count, train_seconds = _train_and_score(capture, steps)
            rows.append((name, len(capture.points), seconds, psnr, count, train_seconds))
            print(rows[-1], flush=True)
    print(f"\n{views} views of {size}x{size}, {steps} steps, test PSNR on the held-out views (every 8th)")
    print(f"{'start':<46} {'points':>8} {'init s':>7} {'PSNR dB':>8} {'Gaussians':>10} {'train s':>8}")
    for name, points, init_seconds, psnr, count, seconds in rows:
        print(f"{name:<46} {points:>8,} {init_seconds:7.1f} {psnr:8.2f} {count:>10,} {seconds:8.1f}")
    ref = rows[0][3]
    print("PSNR against the SfM reference: " + ", ".join(f"{r[0].split(',')[0]} {r[3] - ref:+.2f} dB" for r in rows[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["load", "init"])
    parser.add_argument("--photos", type=int, default=50)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--views", type=int, default=48)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    if args.what == "load":
        bench_load(args.photos)
    else:
        bench_init_points(args.steps, args.views, args.size)


if __name__ == "__main__":
    main()
