"""Unprojection + PLY writing of the full-size SHARP output: Numba kernels vs the torch reference.

    python benchmarks/predict_unproject.py             # best of 3 per row
    python benchmarks/predict_unproject.py --repeat 1

The Gaussian count is measured, not assumed: the default network runs once on the meta device
(shapes only, no weights or arithmetic) at its 1536x1536 input. The network outputs are seeded
random values of that shape (network-like: depths 1-20 m, small anisotropic scales), as the
official weights are not on this machine and the post-processing does not depend on them.

Rows, timed in turn in this process: the reference (torch `transform_gaussians`, float64 and
vectorized, then `vertex_array_torch` and `torch.quantile`, the code before the Numba kernels)
and the current path (`transform_gaussians_cpu`, then `save_ply`'s Numba vertex pass and numpy
quantiles), both writing the same PLY with the same atomic writer. Wall and CPU seconds
(user + system of this process) are shown; on a shared machine compare the ratios.
Anchor (ml-sharp on a 2-core CPU): unproject 3.5-4.6 s + save_ply 3.3 s. Goal: <= 2 s.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from predict import (
    synthetic_raw,  # benchmarks/predict.py: the same seeded network-like outputs
)

from splatforge.io.ply_format import write_ply_elements
from splatforge.predict import Prediction, create_predictor, save_ply
from splatforge.predict.ply import ply_elements, vertex_array_torch
from splatforge.predict.sharp import SharpGaussians
from splatforge.predict.sharp.presets import preset_params
from splatforge.predict.unproject import (
    transform_gaussians,
    transform_gaussians_cpu,
    unprojection_matrix,
)

F_PX, IMAGE_SIZE = 1400.0, (1536, 1024)  # a landscape photo's focal length and size


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measured_gaussian_count(preset: str = "default") -> tuple[int, int]:
    """(input size, Gaussians per image) of the preset's network, run on the meta device."""
    with torch.device("meta"):
        model = create_predictor(preset_params(preset)).eval()
        size = model.internal_resolution()
        with torch.no_grad():
            out = model(torch.empty(1, 3, size, size), torch.empty(1))
    return size, int(out.mean_vectors.shape[1])


def unproject_with(transform, raw: SharpGaussians, size: int) -> Prediction:
    linear = unprojection_matrix(F_PX, IMAGE_SIZE, size)
    means, quats, scales = transform(raw.mean_vectors[0], raw.quaternions[0],
                                     raw.singular_values[0], linear,
                                     torch.zeros(3, dtype=torch.float64))
    return Prediction(means, scales, quats, raw.colors[0], raw.opacities[0], F_PX, IMAGE_SIZE)


def save_ply_reference(prediction: Prediction, path: Path) -> Path:
    vertex = vertex_array_torch(prediction)
    quantiles = torch.quantile(1.0 / prediction.means[:, 2].float(), torch.tensor([0.1, 0.9]))
    write_ply_elements(path, ply_elements(prediction, vertex, quantiles.numpy()))
    return path


def timed(fn, repeat: int):
    """Best (wall, cpu) seconds of `repeat` calls after one untimed warm-up (Numba compiles or
    loads its cache there), and the last result."""
    result = fn()
    best_wall = best_cpu = float("inf")
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), cpu_seconds()
        result = fn()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, cpu_seconds() - cpu)
    return best_wall, best_cpu, result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="best of N timed runs per row")
    args = parser.parse_args(argv)
    size, n = measured_gaussian_count()
    print(f"default network at {size}x{size}: {n:,} Gaussians per image (meta-device forward); "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    raw = synthetic_raw(n)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, transform, write in (("reference (torch)", transform_gaussians, save_ply_reference),
                                       ("current (Numba)", transform_gaussians_cpu, save_ply)):
            path = Path(tmp) / f"{name.split()[0]}.ply"
            u_wall, u_cpu, prediction = timed(partial(unproject_with, transform, raw, size),
                                              args.repeat)
            p_wall, p_cpu, _ = timed(partial(write, prediction, path), args.repeat)
            rows.append((name, u_wall, u_cpu, p_wall, p_cpu, path.stat().st_size, prediction))
        ref, cur = rows[0][-1], rows[1][-1]
        same = (torch.equal(ref.means, cur.means)
                and (Path(tmp) / "reference.ply").stat().st_size == (Path(tmp) / "current.ply").stat().st_size)
        scale_err = float(((cur.scales - ref.scales).abs() / ref.scales).max())
    print(f"\n{'row':<20} {'unproject wall/cpu s':>22} {'PLY wall/cpu s':>18} {'total wall/cpu s':>20}"
          f" {'PLY MiB':>8}")
    for name, u_wall, u_cpu, p_wall, p_cpu, size_bytes, _ in rows:
        print(f"{name:<20} {u_wall:>10.3f} /{u_cpu:>9.3f} {p_wall:>8.3f} /{p_cpu:>7.3f} "
              f"{u_wall + p_wall:>9.3f} /{u_cpu + p_cpu:>8.3f} {size_bytes / 2**20:>8.1f}")
    (_, ru_w, ru_c, rp_w, rp_c, _, _), (_, cu_w, cu_c, cp_w, cp_c, _, _) = rows
    print(f"\nreference / current: unproject {ru_w / cu_w:.1f}x wall, {ru_c / cu_c:.1f}x cpu; "
          f"PLY {rp_w / cp_w:.1f}x wall, {rp_c / cp_c:.1f}x cpu; total "
          f"{(ru_w + rp_w) / (cu_w + cp_w):.1f}x wall")
    total = cu_w + cp_w
    print(f"current total {total:.2f} s wall: goal <= 2 s {'met' if total <= 2 else 'NOT met'}; "
          f"same means and file size as the reference: {same}; largest relative scale "
          f"difference {scale_err:.1e}")


if __name__ == "__main__":
    main()
