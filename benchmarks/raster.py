"""Rasterizer benchmark: the Numba CPU backend against the dense torch reference, same process.

    python benchmarks/raster.py [--garden PATH] [--repeats 5] [--quick]

Prints two tables: the garden scene (138,766 Gaussians from ../shared/data/test_garden.npz, its 3
cameras at 648x420), and random Gaussians (1k / 10k / 100k at 256x256 and 512x512) with the
reference's time where it finishes in reasonable time and the speed-up ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from _timing import timed

import splatforge
from splatforge.io.points_capture import load_point_capture

DEFAULT_GARDEN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "test_garden.npz"


def forward_and_backward(scene, backend, backward):
    def run():
        params = {k: (v.detach().requires_grad_(backward) if k in ("means", "quats", "scales", "opacities", "colors")
                      else v) for k, v in scene.items()}
        rgb, alpha, _ = splatforge.rasterization(**params, packed=False, backend=backend)
        if backward:
            (rgb.sum() + alpha.sum()).backward()
    return run


def random_scene(n, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 3, generator=g) * torch.tensor([2.0, 2.0, 2.0]) - torch.tensor([1.0, 1.0, -2.0])
    return dict(
        means=means,
        quats=torch.randn(n, 4, generator=g),
        scales=torch.rand(n, 3, generator=g) * 0.03 + 0.005,
        opacities=torch.rand(n, generator=g) * 0.7 + 0.3,
        colors=torch.rand(n, 3, generator=g),
        viewmats=torch.eye(4)[None],
        Ks=torch.tensor([[[size * 1.0, 0, size / 2], [0, size * 1.0, size / 2], [0, 0, 1]]]),
        width=size, height=size,
    )


def garden_table(path, repeats):
    capture = load_point_capture(path)
    gaussians = capture.to_gaussians(opacity=0.8, sh_degree=0)
    print(f"\nGarden: {len(gaussians):,} Gaussians, {capture.width}x{capture.height}, backend cpu "
          f"({torch.get_num_threads()} torch threads)")
    print(f"{'camera':>6} | {'forward ms':>10} | {'fwd+bwd ms':>10} | {'intersections':>13}")
    print("-" * 50)
    rows = []
    for i in range(capture.viewmats.shape[0]):
        scene = dict(means=gaussians.means, quats=gaussians.quats, scales=gaussians.activated_scales(),
                     opacities=gaussians.activated_opacities(), colors=gaussians.rgb(),
                     viewmats=capture.viewmats[i:i + 1], Ks=capture.Ks[i:i + 1],
                     width=capture.width, height=capture.height)
        fwd = timed(forward_and_backward(scene, "cpu", False), repeats)
        both = timed(forward_and_backward(scene, "cpu", True), repeats)
        isects = splatforge.rasterization(**scene, backend="cpu")[2]["isect_ids"].numel()
        rows.append((fwd, both))
        print(f"{i:>6} | {fwd:>10.1f} | {both:>10.1f} | {isects:>13,}")
    print(f"{'mean':>6} | {statistics.mean(r[0] for r in rows):>10.1f} | "
          f"{statistics.mean(r[1] for r in rows):>10.1f} |   (goals: <= 150 / <= 500 ms)")


def random_table(repeats, quick):
    counts = [1_000, 2_000, 10_000] if quick else [1_000, 2_000, 10_000, 100_000]
    # the dense reference holds pixels x Gaussians floats per op; beyond this it would take minutes
    reference_budget = 256 * 256 * 2_000
    print("\nRandom Gaussians, fwd+bwd ms (forward alone in brackets)")
    print(f"{'N':>8} | {'size':>7} | {'cpu':>18} | {'torch reference':>15} | {'ratio':>7}")
    print("-" * 68)
    for size in (256, 512):
        for n in counts:
            scene = random_scene(n, size)
            fwd = timed(forward_and_backward(scene, "cpu", False), repeats)
            both = timed(forward_and_backward(scene, "cpu", True), repeats)
            ref, ratio = "-", "-"
            if n * size * size <= reference_budget:
                ref_ms = timed(forward_and_backward(scene, "torch", True), 1)
                ref, ratio = f"{ref_ms:,.0f}", f"{ref_ms / both:,.0f}x"
            print(f"{n:>8,} | {size:>3}^2   | {both:>8.1f} ({fwd:>6.1f}) | {ref:>15} | {ratio:>7}")
    print("(goal: >= 300x the dense torch reference at 2,000 Gaussians, 256x256)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--garden", type=Path, default=DEFAULT_GARDEN)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="skip the 100k random scenes")
    args = parser.parse_args(argv)
    if args.garden.is_file():
        garden_table(args.garden, args.repeats)
    else:
        print(f"(garden skipped: {args.garden} not found)", file=sys.stderr)
    random_table(args.repeats, args.quick)


if __name__ == "__main__":
    main()
