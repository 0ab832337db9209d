"""Training benchmark on the built-in demo capture (48 views, 256x256, made by `splatforge demo`'s
ray caster): steps per second, Gaussian count, peak memory, and test PSNR against wall time.

Rows (each in its own subprocess, so peak memory is the row's own):
  mcmc-50k     MCMC from 50,000 random points, capped at 50,000: the speed at 50k Gaussians
  default      gsplat's default strategy from the SfM points, its schedule compressed to the run
  demo         what `splatforge demo` does: the schedule fitted to the row's seconds
  demo-steps   the demo's earlier fixed schedule (DEMO_TRAIN: 3,000 steps, cut by the time)
Reference (same process, for the ratio): one training step of 5,000 Gaussians at 128x128 with the
dense torch rasterizer (`backend="torch"`) against the CPU backend.

    python benchmarks/train.py                # about 10 minutes: 3 runs of 180 s
    python benchmarks/train.py --seconds 60   # shorter
Goals on a 2-core machine: >= 20 steps/s with 50,000 Gaussians; test PSNR >= 28 dB within 3 minutes.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

MARKS = (15, 30, 60, 120, 180, 240, 300)  # seconds of training at which the test views are scored

ROWS = {
    # starts from 50,000 random points in the cameras' common view (load_capture(init="random"))
    "mcmc-50k": dict(strategy="mcmc", cap_max=50_000,
                     init_opacity=0.5, init_scale=0.5, refine_start_iter=100, refine_every=100,
                     sh_degree_interval=300, max_steps=6000),  # enough steps to fill 180 s
    "default": dict(strategy="default", refine_start_iter=200, refine_every=100, refine_stop_iter=2500,
                    reset_every=1500, sh_degree_interval=300),
}


def run_row(name: str, capture_dir: Path, seconds: float) -> dict:
    from splatforge.capture import load_capture
    from splatforge.train.trainer import TrainConfig, Trainer
    from splatforge.train_cli import DEMO_TRAIN

    capture = load_capture(capture_dir, init="random" if name == "mcmc-50k" else "auto")
    fitted = name == "demo"  # `splatforge demo`: the schedule fitted to the time budget
    settings = {} if fitted else DEMO_TRAIN if name == "demo-steps" else ROWS[name]
    cfg = TrainConfig(**settings) if fitted else TrainConfig(**{**settings, "max_steps": settings.get("max_steps", 3000)})
    trainer = Trainer(capture, cfg)
    trainer.train_step()  # compile / warm the kernels outside the clock
    marks = [m for m in MARKS if m <= seconds] or [seconds]
    curve, trained, window = [], 0.0, []
    # the fitted schedule's clock is the training time, so the evaluations at the marks do not count
    trainer = Trainer(capture, cfg, budget_seconds=marks[-1] if fitted else None, clock=lambda: trained)
    while trained < marks[-1] and not trainer.finished():
        t0 = time.perf_counter()
        trainer.train_step()
        dt = time.perf_counter() - t0
        trained += dt
        window.append((trainer.num_gaussians, dt))
        if trained >= marks[len(curve)] or trainer.finished():
            scores = trainer.evaluate()
            recent = window[-50:]
            curve.append({"seconds": round(trained, 1), "step": trainer.step, "count": trainer.num_gaussians,
                          "psnr": scores["psnr"], "ssim": scores["ssim"],
                          "steps_per_second": len(recent) / sum(d for _, d in recent)})
    at_50k = [d for n, d in window if 45_000 <= n <= 55_000]
    return {"row": name, "curve": curve, "steps": trainer.step,
            "steps_per_second": trainer.step / trained,
            "steps_per_second_at_50k": len(at_50k) / sum(at_50k) if at_50k else None,
            "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def reference_ratio() -> tuple[float, float]:
    """Seconds per step, CPU backend and dense torch backend, on one small problem."""
    import numpy as np

    from splatforge.core.cameras import orbit_path
    from splatforge.capture import Capture, View
    from splatforge.train.trainer import TrainConfig, Trainer

    rng = np.random.default_rng(0)
    vms = orbit_path((0, 0, 0), 1.0, 4, elevation_degrees=25).double().numpy()
    k = np.array([[110.0, 0, 64], [0, 110.0, 64], [0, 0, 1]])
    views = [View(f"v{i}", rng.random((128, 128, 3), dtype=np.float32), k, vms[i]) for i in range(4)]
    pts = rng.normal(size=(5000, 3)) * 0.25
    capture = Capture(views, [], pts, rng.integers(0, 255, (5000, 3)).astype(np.uint8), np.eye(4))
    times = []
    for backend in ("cpu", "torch"):
        trainer = Trainer(capture, TrainConfig(backend=backend, max_steps=100))
        trainer.train_step()
        t0 = time.perf_counter()
        for _ in range(3):
            trainer.train_step()
        times.append((time.perf_counter() - t0) / 3)
    return times[0], times[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=180.0, help="training time per row")
    parser.add_argument("--rows", nargs="*", default=["mcmc-50k", "default", "demo", "demo-steps"])
    parser.add_argument("--capture", type=Path, default=Path("out/bench/demo_capture"))
    parser.add_argument("--row", help=argparse.SUPPRESS)  # internal: run one row and print its JSON
    args = parser.parse_args()
    if args.row:
        print(json.dumps(run_row(args.row, args.capture, args.seconds)))
        return

    from splatforge.demo.capture import make_demo_capture

    make_demo_capture(args.capture, num_views=48, width=256, height=256, seed=0)
    results = []
    for name in args.rows:
        done = subprocess.run([sys.executable, __file__, "--row", name, "--seconds", str(args.seconds),
                               "--capture", str(args.capture)], capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"row {name} failed:\n{done.stderr}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    cpu_s, torch_s = reference_ratio()

    print(f"demo capture {args.capture}: 42 train / 6 test views, 256x256; {args.seconds:g} s of training per row")
    print(f"{'row':<10} {'train s':>8} {'step':>6} {'Gaussians':>10} {'steps/s':>8} {'PSNR':>7} {'SSIM':>6}")
    for r in results:
        for point in r["curve"]:
            print(f"{r['row']:<10} {point['seconds']:>8.0f} {point['step']:>6} {point['count']:>10,} "
                  f"{point['steps_per_second']:>8.1f} {point['psnr']:>7.2f} {point['ssim']:>6.3f}")
        at50 = r["steps_per_second_at_50k"]
        print(f"{r['row']:<10} overall {r['steps_per_second']:.1f} steps/s"
              + (f", {at50:.1f} steps/s at 45k-55k Gaussians" if at50 else "")
              + f", peak memory {r['peak_memory_mb']:.0f} MB")
    print(f"reference, 5,000 Gaussians at 128x128, one step: cpu backend {cpu_s * 1000:.1f} ms, dense torch "
          f"{torch_s * 1000:.1f} ms: ratio {torch_s / cpu_s:.1f}x")
    print("goals: >= 20 steps/s with 50,000 Gaussians at 256x256; test PSNR >= 28 dB within 180 s")


if __name__ == "__main__":
    main()
