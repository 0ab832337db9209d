"""SSIM benchmark: the fused Numba path against the torch reference, same process.

    python benchmarks/ssim.py [--repeats 20]

For each image size, the median milliseconds of the forward pass alone and of forward + backward
(gradient w.r.t. the image, as in a training step), for the torch path (`_ssim_torch`) and the
fused path (`ssim`, which dispatches to `splatforge.core.ssim_cpu` for float32 CPU images), and the
ratio torch / fused. Both run after warm-up calls (the first fused call loads or compiles the
Numba kernels).
"""

from __future__ import annotations

import argparse

import torch
from _timing import timed

from splatforge.core.metrics import _ssim_torch, ssim

SIZES = ((256, 256, 3), (768, 512, 3))


def make_run(metric, image, target, backward):
    def run():
        if backward:
            x = image.detach().requires_grad_(True)
            metric(x, target).backward()
        else:
            with torch.no_grad():
                metric(image, target)
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    g = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {args.repeats} runs, ms")
    print(f"{'size':>12} | {'torch fwd':>9} {'torch f+b':>9} | {'fused fwd':>9} {'fused f+b':>9} | {'fwd x':>6} {'f+b x':>6}")
    for shape in SIZES:
        target = torch.rand(shape, generator=g)
        image = (target + 0.1 * torch.randn(shape, generator=g)).clamp(0, 1)
        row = [timed(make_run(metric, image, target, backward), args.repeats, warmup=3)
               for metric in (_ssim_torch, ssim) for backward in (False, True)]
        size = "x".join(str(s) for s in shape)
        print(f"{size:>12} | {row[0]:9.2f} {row[1]:9.2f} | {row[2]:9.2f} {row[3]:9.2f} | "
              f"{row[0] / row[2]:6.1f} {row[1] / row[3]:6.1f}")


if __name__ == "__main__":
    main()
