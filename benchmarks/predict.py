"""SHARP prediction benchmark: model load, torch vs ONNX Runtime inference, unprojection, PLY.

    python benchmarks/predict.py            # small preset + post-processing at full size
    python benchmarks/predict.py --full     # also the official-size network (random weights;
                                            # minutes per forward pass on a 2-core CPU, ~8 GB RAM)

Rows: model build/load; one forward pass in torch eager and in ONNX Runtime (exported in this
run, max abs difference shown); unprojection of 1,179,648 Gaussians (the official network's
output count) with the closed-form vectorized eigen-solver, against ml-sharp's approach (a
float64 SVD of every covariance, timed in this run on a subset and scaled); PLY write. Peak
memory is the process's maximum resident set size after each row.
Goals: ONNX Runtime faster than torch eager on the full network; unprojection + PLY write of
1.18M Gaussians <= 2 s.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch

from splatforge.predict import Prediction, build_predictor, save_ply
from splatforge.predict.api import unproject
from splatforge.predict.onnx import export_onnx, load_onnx_predictor
from splatforge.predict.sharp import SharpGaussians
from splatforge.predict.unproject import covariances, unprojection_matrix

FULL_COUNT = 2 * 768 * 768


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def timed(fn, repeat: int = 1):
    """Best of `repeat` calls, after one untimed warm-up call when repeat > 1."""
    if repeat > 1:
        fn()
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def row(name: str, seconds: float, note: str = "") -> None:
    print(f"{name:<44} {seconds:>9.3f} s {peak_gib():>8.2f} GiB  {note}")


def bench_network(preset: str, repeat: int, workdir: Path) -> None:
    seconds, model = timed(lambda: build_predictor(preset, seed=0))
    row(f"[{preset}] build + random weights", seconds)
    checkpoint = workdir / f"{preset}.pt"
    torch.save(model.state_dict(), checkpoint)
    seconds, model = timed(lambda: build_predictor(preset, checkpoint=checkpoint))
    row(f"[{preset}] load from checkpoint", seconds,
        f"{checkpoint.stat().st_size / 2**20:,.0f} MiB state dict")
    checkpoint.unlink()
    size = model.internal_resolution()
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    factor = torch.tensor([0.9])
    with torch.no_grad():
        t_torch, expected = timed(lambda: model(image, factor), repeat)
    n = expected.mean_vectors.shape[1]
    row(f"[{preset}] forward, torch eager", t_torch, f"{n:,} Gaussians")
    t_export, path = timed(lambda: export_onnx(model, workdir / f"{preset}.onnx"))
    row(f"[{preset}] ONNX export", t_export)
    session = load_onnx_predictor(path)
    model = None  # free the torch weights before ORT loads its copy
    t_ort, got = timed(lambda: session(image, factor), repeat)
    diff = max(float((getattr(got, f) - getattr(expected, f)).abs().max()) for f in got._fields)
    row(f"[{preset}] forward, ONNX Runtime", t_ort,
        f"torch/ORT = {t_torch / t_ort:.2f}x, max abs diff {diff:.1e}")


def synthetic_raw(n: int) -> SharpGaussians:
    """Network-like output: NDC x, y within the image, depths 1-20 m, small anisotropic scales."""
    gen = torch.Generator().manual_seed(0)
    z = 1 + 19 * torch.rand(n, 1, generator=gen)
    xy = (torch.rand(n, 2, generator=gen) * 2 - 1) * z
    return SharpGaussians(
        mean_vectors=torch.cat([xy, z], 1)[None],
        singular_values=(0.001 + 0.01 * torch.rand(n, 3, generator=gen))[None],
        quaternions=torch.randn(n, 4, generator=gen)[None],
        colors=torch.rand(n, 3, generator=gen)[None],
        opacities=(0.01 + 0.98 * torch.rand(n, generator=gen))[None],
    )


def ml_sharp_style_seconds(raw: SharpGaussians, linear: torch.Tensor, subset: int) -> float:
    """ml-sharp's decomposition: float64 SVD of each covariance (batched), on a subset."""
    q = raw.quaternions[0, :subset].double()
    s = raw.singular_values[0, :subset].double()
    start = time.perf_counter()
    cov = linear @ covariances(q, s) @ linear.T
    torch.linalg.svd(cov)
    return time.perf_counter() - start


def bench_postprocessing(workdir: Path) -> None:
    raw = synthetic_raw(FULL_COUNT)
    f_px, image_size = 1400.0, (1536, 1024)
    t_unproject, prediction = timed(lambda: unproject(raw, f_px, image_size, 1536), 3)
    assert isinstance(prediction, Prediction)
    subset = 200_000
    linear = unprojection_matrix(f_px, image_size, 1536)
    t_ref = ml_sharp_style_seconds(raw, linear, subset) * FULL_COUNT / subset
    row(f"unprojection, {FULL_COUNT:,} Gaussians", t_unproject,
        f"ml-sharp-style SVD ~{t_ref:.2f} s ({t_ref / t_unproject:.1f}x slower)")
    t_ply, path = timed(lambda: save_ply(prediction, workdir / "full.ply"), 3)
    row("save_ply", t_ply, f"{path.stat().st_size / 2**20:.0f} MiB")
    total = t_unproject + t_ply
    row("unprojection + save_ply", total, f"goal <= 2 s: {'met' if total <= 2 else 'NOT met'}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true",
                        help="also benchmark the official-size network (slow, ~8 GB RAM)")
    parser.add_argument("--threads", type=int, default=None, help="torch/ORT intra-op threads")
    parser.add_argument("--repeat", type=int, default=3, help="best of N forward passes (small)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'step':<44} {'time':>11} {'peak RSS':>12}  notes")
    print("-" * 110)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        bench_network("small", args.repeat, workdir)
        bench_postprocessing(workdir)
        if args.full:
            bench_network("default", 1, workdir)


if __name__ == "__main__":
    main()
