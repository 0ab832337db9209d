"""`generate` benchmark, per stage, with random weights: the LGM network forward at 256x256 input
views, the PLY write, the turntable video; the multi-view diffusion stage has its own script
(benchmarks/generate_multiview.py).

    python benchmarks/generate.py                 # the "mini" test preset and the released "big" architecture
    python benchmarks/generate.py --variants      # also: how the big forward's time moves with
                                                  # the memory layout (contiguous instead of the
                                                  # default channels-last), PyTorch's GroupNorm,
                                                  # bfloat16 autocast and the attention (LGM's
                                                  # explicit softmax vs SDPA)
    python benchmarks/generate.py --presets mini  # quick

Each row gives wall and CPU seconds of the same call (CPU = all threads of this process, so on a
shared machine it is the steadier figure) and the peak resident memory. Variant rows are timed in
turn in this process and given as a ratio to the baseline row measured just before them.
Goal: the big network's forward at 256x256 in <= 10 s on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from splatforge.generate import (
    Generation,
    TurntableParams,
    build_generator,
    render_turntable,
)
from splatforge.generate.api import run_network
from splatforge.generate.lgm import unet as lgm_unet
from splatforge.generate.lgm.cameras import network_input
from splatforge.generate.lgm.model import activate
from splatforge.generate.render import turntable_frames


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def row(name: str, wall: float, cpu: float, note: str = "") -> None:
    print(f"{name:<52} {wall:>8.2f} s {cpu:>8.2f} s {peak_gib():>7.2f} GiB  {note}", flush=True)


def views_at(size: int, seed: int = 0) -> np.ndarray:
    """Four smooth random views [4, size, size, 3] (content does not change the cost)."""
    gen = torch.Generator().manual_seed(seed)
    small = torch.rand(4, 3, 8, 8, generator=gen)
    return F.interpolate(small, size=(size, size), mode="bilinear").permute(0, 2, 3, 1).numpy()


def explicit_attention(q, k, v):
    """LGM's attention without xFormers: softmax(q k^T / sqrt(d)) v, materialized."""
    attn = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    return attn.softmax(dim=-1) @ v


@contextlib.contextmanager
def patched(owner, name: str, value):
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


def forward(model, x, *, mode="no_grad", dtype=None):
    ctx = torch.inference_mode() if mode == "inference_mode" else torch.no_grad()
    with ctx, (torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()):
        out = model.conv(model.unet(x.reshape(-1, *x.shape[2:]))).float()
    return out


def gaussians_of(raw: torch.Tensor) -> torch.Tensor:  # [4, 14, s, s] raw -> [4 s s, 14] activated
    return activate(raw.reshape(4, 14, -1).permute(0, 2, 1).reshape(-1, 14))


def bench_preset(preset: str, variants: bool, workdir: Path, frames: int) -> None:
    wall, cpu, model = timed(lambda: build_generator(preset, seed=0))
    params = sum(p.numel() for p in model.parameters())
    row(f"[{preset}] build, random weights ({params / 1e6:.1f}M parameters)", wall, cpu)
    views = views_at(256)
    x = network_input(views, model.config)
    note = f"input {model.config.input_size}x{model.config.input_size}"
    if preset == "mini":  # a warm-up call; the big network's first call costs the same as any
        run_network(model, views)
    wall, cpu, raw = timed(lambda: forward(model, x, mode="inference_mode"))
    base_wall, base_cpu = wall, cpu
    row(f"[{preset}] network forward (inference_mode, fp32, channels-last, SDPA)", wall, cpu, note)
    if variants:
        def variant_row(label: str, wall: float, cpu: float, out: torch.Tensor) -> None:
            diff = (gaussians_of(out) - gaussians_of(raw)).abs()
            row(f"[{preset}]   {label}", wall, cpu,
                f"x{wall / base_wall:.2f} wall, x{cpu / base_cpu:.2f} CPU vs the row above; Gaussians differ: "
                f"positions {diff[:, :3].max():.1e} max {diff[:, :3].mean():.1e} mean, "
                f"colours {diff[:, 11:].max():.1e} max")

        contiguous = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
        variant_row("contiguous (NCHW) layout", *timed(lambda: forward(contiguous, x, mode="inference_mode")))
        del contiguous
        # PyTorch's own channels-last GroupNorm: float32 sums (on the parity fixture 1.1e-4 from
        # float64 instead of 1.4e-5 with lgm.groupnorm's kernel)
        with patched(lgm_unet, "group_norm", lambda norm, t: norm(t)):
            variant_row("channels-last, PyTorch's GroupNorm", *timed(lambda: forward(model, x, mode="inference_mode")))
        variant_row("bfloat16 autocast", *timed(lambda: forward(model, x, mode="inference_mode", dtype=torch.bfloat16)))
        with patched(lgm_unet.F, "scaled_dot_product_attention", explicit_attention):
            variant_row("LGM's explicit attention instead of SDPA",
                        *timed(lambda: forward(model, x, mode="inference_mode")))
    gaussians = gaussians_of(raw)

    result = Generation.from_network(gaussians, views)
    wall, cpu, path = timed(lambda: result.save_ply(workdir / f"{preset}.ply"))
    row(f"[{preset}] PLY write", wall, cpu, f"{result.num_gaussians:,} Gaussians, {path.stat().st_size / 1e6:.1f} MB")
    params = TurntableParams(num_frames=frames)
    wall, cpu, _ = timed(lambda: render_turntable(result, workdir / f"{preset}.mp4", params))
    full = TurntableParams()
    row(f"[{preset}] turntable video, {frames} frames at {params.size}px", wall, cpu,
        f"{wall / frames:.3f} s/frame; LGM's {full.num_frames} frames: ~{wall / frames * full.num_frames:.0f} s")
    wall, cpu, _ = timed(lambda: list(turntable_frames(result, TurntableParams(num_frames=4))))
    row(f"[{preset}]   rasterization only, 4 frames", wall, cpu, f"{wall / 4:.3f} s/frame")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["mini", "big"])
    parser.add_argument("--variants", action="store_true", help="time the big forward's alternatives")
    parser.add_argument("--frames", type=int, default=12, help="turntable frames to time (scaled to 180)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {sys.platform}")
    print(f"{'stage':<52} {'wall':>10} {'CPU':>10} {'peak':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            bench_preset(preset, args.variants and preset != "mini", Path(tmp), args.frames)


if __name__ == "__main__":
    main()
