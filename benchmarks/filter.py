"""Decimation benchmark: what keeping 50% and 25% of a trained scene costs in PSNR, ranked by
`splatforge.io.filters.visibility` (opacity x area of the two largest axes, what `splatforge filter
--decimate` keeps), by opacity x volume^(2/3), and by a plain random subsample (the reference).

    python benchmarks/filter.py                     # the demo scene (trained as `splatforge demo` does)
    python benchmarks/filter.py --train-seconds 600 # ... trained longer (cached under out/bench/)
    python benchmarks/filter.py --ply scene.ply [--capture DIR]

PSNR of the decimated scene's renders against the full scene's renders (our rasterizer), from
the capture's own cameras ("own dB", 8 of them spread over the capture) and from 8 orbit views
("orbit dB"); with a capture, also against its held-out test photos ("photo dB"). "MSE ratio"
is the random subsample's error over the method's on the capture's cameras (orbit views without a
capture): how many times less the method loses than random at the same count.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compress import TestViews, trained_demo_scene  # noqa: E402  (the demo scene, cached)

from splatforge.compress.quality import orbit_cameras, render_views  # noqa: E402
from splatforge.core.gaussians import Gaussians  # noqa: E402
from splatforge.core.metrics import psnr  # noqa: E402
from splatforge.io.filters import decimate, random_subsample, volume_visibility  # noqa: E402
from splatforge.io.scene import load_scene  # noqa: E402


def capture_cameras(capture_dir: Path, count: int = 8) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """`count` of the capture's cameras (spread over them by name), in the scene file's frame."""
    from splatforge.capture import load_capture

    cap = load_capture(capture_dir, normalize=False, init="none")
    views = sorted(cap.train + cap.test, key=lambda v: v.name)
    viewmats = cap.model_viewmats()
    pick = np.linspace(0, len(views) - 1, count).round().astype(int)
    ks = torch.tensor(np.stack([views[i].K for i in pick]), dtype=torch.float32)
    h, w = views[0].image.shape[:2]
    return torch.tensor(viewmats[pick], dtype=torch.float32), ks, w, h


def mean_psnr(images: torch.Tensor, reference: torch.Tensor) -> float:
    return float(np.mean([psnr(images[i], reference[i]) for i in range(len(images))]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ply", type=Path, help="a trained scene to use instead of the demo scene")
    ap.add_argument("--capture", type=Path, help="the capture --ply was trained on (its cameras and photos)")
    ap.add_argument("--train-seconds", type=float, default=150.0,
                    help="training budget of the demo scene (default: splatforge demo's, 150 s)")
    ap.add_argument("--seeds", type=int, default=3, help="random subsamples averaged per fraction")
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.25])
    args = ap.parse_args()

    if args.ply:
        ply, capture_dir = args.ply, args.capture
    else:
        capture_dir, ply = trained_demo_scene(args.train_seconds)
    g = load_scene(ply)
    print(f"scene: {ply} ({len(g):,} Gaussians, SH degree {g.sh_degree})", flush=True)

    orbit = orbit_cameras(g, 8, 320, 240)
    orbit_ref = render_views(g, *orbit, 320, 240)
    own = own_ref = tests = None
    if capture_dir is not None:
        vm, ks, w, h = capture_cameras(capture_dir)
        own = (vm, ks, w, h)
        own_ref = render_views(g, vm, ks, w, h)
        tests = TestViews(capture_dir)
        full_photo = tests.psnr(g)
        print(f"full scene on the test photos: {full_photo:.2f} dB", flush=True)

    def measure(sub: Gaussians) -> dict:
        row = {"orbit": mean_psnr(render_views(sub, *orbit, 320, 240), orbit_ref)}
        if own is not None:
            row["own"] = mean_psnr(render_views(sub, *own), own_ref)
            row["photo"] = tests.psnr(sub)
        return row

    rows = []
    for fraction in args.fractions:
        n = max(1, round(len(g) * fraction))
        randoms = [measure(random_subsample(g, n, seed=s)) for s in range(args.seeds)]
        reference = {k: float(np.mean([r[k] for r in randoms])) for k in randoms[0]}
        methods = [("opacity x area (ours)", measure(decimate(g, n))),
                   ("opacity x vol^(2/3)", measure(decimate(g, n, score=volume_visibility(g)))),
                   (f"random (mean of {args.seeds})", reference)]
        key = "own" if own is not None else "orbit"
        for name, row in methods:
            rows.append(dict(keep=f"{fraction:.0%}", n=n, method=name, **row,
                             gain=row[key] - reference[key], ratio=10 ** ((row[key] - reference[key]) / 10)))
        print(f"  {fraction:.0%} done", file=sys.stderr, flush=True)

    has_own = own is not None
    head = (f"{'keep':>5} {'N':>8}  {'method':<24} {'own dB':>7} {'orbit dB':>8} {'photo dB':>8} {'gain dB':>7} "
            f"{'MSE ratio':>9}")
    print(head)
    print("-" * len(head))
    for r in rows:
        own_text = f"{r['own']:7.2f}" if has_own else f"{'-':>7}"
        photo = f"{r['photo']:8.2f}" if has_own else f"{'-':>8}"
        print(f"{r['keep']:>5} {r['n']:>8,}  {r['method']:<24} {own_text} {r['orbit']:8.2f} {photo} "
              f"{r['gain']:7.2f} {r['ratio']:8.2f}x")
    if has_own:
        print(f"(full scene on the test photos: {full_photo:.2f} dB)")


if __name__ == "__main__":
    main()
