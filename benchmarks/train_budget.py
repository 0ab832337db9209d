"""Training to a time budget on the outdoor demo capture (a sky and far hills at infinity that no SfM
point covers; 48 views of 256x256 on three low orbits, every 8th held out between two training
views): per-view held-out PSNR of each row after the same `--max-seconds` of `run_training`.

Rows (each in its own subprocess, one after the other):
  truncated   today's gsplat schedule (max_steps 30,000) cut by the time budget: the reference
  fitted      the default: the whole schedule fitted to the budget (splatforge.train.schedule),
              a Gaussian budget of 0.02 per training pixel and 4,000 far "sky" points
  others      the fitted schedule without the sky points plus one option against floaters, or
              another Gaussian budget (see ROWS)
Each row prints its steps, Gaussians, mean and per-view held-out PSNR, and the change against the
truncated row. Nothing here asserts a time: step rates depend on the machine and its load.

    python benchmarks/train_budget.py                          # every row, 180 s each
    python benchmarks/train_budget.py --seconds 60 --rows truncated fitted
    python benchmarks/train_budget.py --threads 1     # a busy machine: Numba's parallel kernels wait on
                                                      # descheduled threads, one thread is steadier
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

ROWS = {
    "truncated": dict(max_steps=30_000),
    "fitted": dict(),  # the default: the fitted schedule, 0.02 Gaussians per pixel, 4,000 sky points
    "fitted-no-sky": dict(sky_points=0),
    "fitted-nocap": dict(gaussians_per_pixel=1.0),
    "fitted-cap0.01": dict(gaussians_per_pixel=0.01),
    "fitted-cap0.05": dict(gaussians_per_pixel=0.05),
    "random-bg": dict(sky_points=0, random_background=True),
    "prune-2d": dict(sky_points=0, fitted={"scale2d_stop": 0.75}),
    "opacity-reg": dict(sky_points=0, opacity_reg=0.01),
    "sky-init+random-bg": dict(random_background=True),
    "sky-init+prune-2d": dict(fitted={"scale2d_stop": 0.75}),
    "mcmc": dict(strategy="mcmc", opacity_reg=0.01, scale_reg=0.01),
    "truncated-demo": dict(max_steps=3000, sh_degree_interval=300, refine_start_iter=200, refine_every=100,
                           refine_stop_iter=2500, reset_every=1500),
}
DEFAULT_ROWS = ["truncated", "fitted", "fitted-no-sky", "random-bg", "prune-2d", "opacity-reg", "sky-init+prune-2d"]


class SimulatedClock:
    """Time as a quiet machine would spend it: each step costs a + b x (Gaussian count) seconds
    (`--simulate`), whatever this machine's load does to the real step time."""

    def __init__(self, a: float, b: float) -> None:
        self.now, self.a, self.b = 0.0, a, b

    def __call__(self) -> float:
        return self.now

    def tick(self, trainer, record) -> None:
        self.now += self.a + self.b * trainer.num_gaussians


def run_row(name: str, capture_dir: Path, seconds: float, simulate: Optional[tuple] = None) -> dict:
    from splatforge.capture import load_capture
    from splatforge.train.run import RunOptions, run_training
    from splatforge.train.schedule import FittedSchedule
    from splatforge.train.trainer import TrainConfig

    capture = load_capture(capture_dir)
    from splatforge.train.trainer import Trainer

    warm = Trainer(capture, TrainConfig(max_steps=2))  # compile / load the kernels outside the budget
    warm.train_step()
    warm.evaluate(capture.test[:1])
    settings = dict(ROWS[name])
    if "fitted" in settings:
        settings["fitted"] = FittedSchedule(**settings["fitted"])
    cfg = TrainConfig(**settings)
    holder = {}
    clock = SimulatedClock(*simulate) if simulate else None

    def on_step(trainer, record):
        holder.setdefault("trainer", trainer)
        if clock is not None:
            clock.tick(trainer, record)

    with tempfile.TemporaryDirectory() as tmp:
        result = run_training(capture, Path(tmp) / "run", cfg,
                              RunOptions(max_seconds=seconds, progress=False, renders=False), on_step=on_step,
                              clock=clock)
    trainer = holder["trainer"]
    per_view = {}
    from splatforge.core.metrics import psnr

    trainer.evaluate(on_view=lambda view, rgb, target: per_view.__setitem__(view.name, psnr(rgb[None], target[None])))
    return {"row": name, "steps": trainer.step, "count": trainer.num_gaussians, "psnr": result.metrics["test"]["psnr"],
            "ssim": result.metrics["test"]["ssim"], "per_view": per_view,
            "train_psnr": trainer.evaluate(trainer.capture.train[::6])["psnr"],
            "final_lr_ratio": trainer.means_lr() / (cfg.means_lr * (max(1, cfg.batch_size) ** 0.5))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=180.0, help="training time budget per row")
    parser.add_argument("--rows", nargs="*", default=DEFAULT_ROWS, choices=list(ROWS))
    parser.add_argument("--scene", choices=["sky", "demo"], default="sky",
                        help="sky: the outdoor capture; demo: `splatforge demo`'s capture (black background)")
    parser.add_argument("--capture", type=Path, default=None, help="where the capture is made (default out/bench/SCENE_capture)")
    parser.add_argument("--size", type=int, default=256, help="photo width and height")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--threads", type=int, default=None, help="Numba threads per row (default: all cores)")
    parser.add_argument("--simulate", type=float, nargs=2, metavar=("A", "B"), default=None,
                        help="time each step as A + B x Gaussians seconds instead of the wall clock (a busy "
                             "machine; e.g. 0.004 7.5e-7: 24 steps/s at 50k Gaussians)")
    parser.add_argument("--jobs", type=int, default=1, help="rows run at once")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # internal: run one row and print its JSON
    args = parser.parse_args()
    if args.row:
        print(json.dumps(run_row(args.row, args.capture, args.seconds, args.simulate)))
        return

    from splatforge.demo.capture import make_demo_capture, make_sky_capture

    args.capture = args.capture or Path(f"out/bench/{args.scene}_capture" + (f"_{args.size}" if args.size != 256 else ""))
    (make_sky_capture if args.scene == "sky" else make_demo_capture)(args.capture, width=args.size, height=args.size)
    env = {**os.environ, **({"NUMBA_NUM_THREADS": str(args.threads)} if args.threads else {})}
    extra = ["--simulate", *map(str, args.simulate)] if args.simulate else []
    results, pending = {}, list(args.rows)
    running: dict = {}
    while pending or running:
        while pending and len(running) < max(1, args.jobs):
            name = pending.pop(0)
            running[name] = subprocess.Popen([sys.executable, __file__, "--row", name, "--seconds", str(args.seconds),
                                              "--capture", str(args.capture), *extra], stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, text=True, env=env)
        name = next(iter(running))
        proc = running.pop(name)
        out, err = proc.communicate()
        if proc.returncode or not out.strip():
            raise SystemExit(f"row {name} failed:\n{err}")
        r = results[name] = json.loads(out.strip().splitlines()[-1])
        print(f"  {name}: {r['steps']} steps, {r['count']:,} Gaussians, held-out PSNR {r['psnr']:.2f} dB", flush=True)
    results = [results[name] for name in args.rows]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))

    views = sorted(results[0]["per_view"])
    ref = next((r for r in results if r["row"] == "truncated"), results[0])
    threads = f", {args.threads} Numba thread(s)" if args.threads else ""
    if args.simulate:
        threads += f", simulated time: {args.simulate[0]:g} s + {args.simulate[1]:g} s x Gaussians a step"
    print(f"\n{args.scene} capture {args.capture}: {len(views)} held-out views of {args.size}x{args.size}; {args.seconds:g} s of training "
          f"per row{threads}")
    head = f"{'row':<20} {'steps':>6} {'Gaussians':>9} {'lr end':>6} {'train':>6} {'mean':>6} {'d mean':>6} {'min':>6}"
    print(head + "".join(f" {Path(v).stem[-3:]:>6}" for v in views))
    for r in results:
        scores = [r["per_view"][v] for v in views]
        print(f"{r['row']:<20} {r['steps']:>6} {r['count']:>9,} {r['final_lr_ratio']:>6.3f} {r['train_psnr']:>6.2f} "
              f"{r['psnr']:>6.2f} {r['psnr'] - ref['psnr']:>+6.2f} {min(scores):>6.2f}"
              + "".join(f" {s:>6.2f}" for s in scores))
    print(f"(d mean: against the {ref['row']} row of this run; lr end: the means' final rate over its first; "
          "train: mean PSNR of every 6th training view)")


if __name__ == "__main__":
    main()
