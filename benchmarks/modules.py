"""Optimization-module benchmark: each module against the capture defect it is for.

The demo scene (48 views at 96x96 by default: 42 training, 6 held out) is given one known defect
at a time (see tests/train/modules/evidence.py); a run without and a run with the matching
module then train with the same seed and steps, and the held-out views (always true) are scored.

    case        defect on the training photos                         module
    background  every photo has a sky-blue background (trainer: black)  background
    exposure    per-photo exposure and white-balance gains            appearance, bilateral
    pose        training cameras turned 1.5 deg and moved 0.03 units  pose
    blur        a third of the training photos motion-blurred (8 deg)  blur

Reference, same run: the clean capture trained the same way ("clean" row), the ceiling the
modules try to get back to; "recovered" is the share of the defect's PSNR loss a module wins back.
Pose rows also give the training cameras' mean rotation (degrees) and centre (normalized units,
cameras at radius 1) error before and after refinement.

    python benchmarks/modules.py                  # about 6-10 minutes on 2 cores
    python benchmarks/modules.py --steps 400 --size 64 --views 24   # about 2 minutes
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", type=int, default=48)
    parser.add_argument("--size", type=int, default=96, help="photo width and height, pixels")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--cases", default="background,exposure,pose,blur")
    parser.add_argument("--capture-dir", type=Path, default=None, help="where to write the demo capture")
    args = parser.parse_args()

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests/ holds the fixtures
    from tests.train.modules import evidence
    from splatforge.train.modules.pose import aligned_pose_error, pose_error

    torch.set_num_threads(2)
    start = time.perf_counter()
    root = args.capture_dir or Path(tempfile.mkdtemp(prefix="splatforge_modules_")) / "demo"
    demo = evidence.load_demo(root, args.views, args.size, num_points=max(1500, args.size * 30))
    steps = args.steps
    bilateral = {"grid_width": 8, "grid_height": 8, "grid_levels": 4, "lr": 5e-3} if args.size <= 128 else {}

    def run(capture, modules="", options=None):
        t0 = time.perf_counter()
        trainer, score = evidence.train_and_score(capture, evidence.evidence_config(steps, modules, options))
        print(f"  {modules or 'no module':<11} {score:6.2f} dB  ({time.perf_counter() - t0:.0f} s)", flush=True)
        return trainer, score

    print(f"demo capture: {len(demo.train)} training + {len(demo.test)} held-out views at {args.size}x{args.size}, "
          f"{steps} steps per run")
    print("clean")
    _, clean = run(demo)
    rows, notes = [], []
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if "background" in cases:
        print("background")
        color = (0.55, 0.7, 0.9)
        capture = evidence.with_background(demo, color)
        _, plain = run(capture)
        trainer, fixed = run(capture, "background")
        learned = trainer.modules[0].color().detach().numpy()
        rows.append(("background", "background", plain, fixed))
        notes.append(f"background: true {color}, learned ({', '.join(f'{c:.3f}' for c in learned)})")
    if "exposure" in cases:
        print("exposure")
        capture = evidence.with_exposure_changes(demo)
        _, plain = run(capture)
        _, fixed = run(capture, "appearance")
        rows.append(("exposure", "appearance", plain, fixed))
        _, fixed = run(capture, "bilateral", {"bilateral": bilateral})
        rows.append(("exposure", "bilateral", plain, fixed))
        if bilateral:
            notes.append(f"bilateral: {bilateral['grid_width']}x{bilateral['grid_height']}x{bilateral['grid_levels']} "
                         f"grids, lr {bilateral['lr']} for photos of {args.size} px")
    if "pose" in cases:
        print("pose")
        capture = evidence.with_pose_noise(demo, rotation_degrees=1.5, translation=0.03)
        _, plain = run(capture)
        trainer, fixed = run(capture, "pose")
        rows.append(("pose", "pose", plain, fixed))
        true = np.stack([v.viewmat for v in demo.train])
        rot0, shift0 = pose_error(np.stack([v.viewmat for v in capture.train]), true)
        rot1, shift1 = pose_error(trainer.modules[0].refined_viewmats().numpy(), true)
        refined = trainer.modules[0].refined_viewmats().numpy()
        rot2, shift2 = aligned_pose_error(refined, true)
        noisy_rot2, noisy_shift2 = aligned_pose_error(np.stack([v.viewmat for v in capture.train]), true)
        notes.append(f"pose error, mean over training cameras: rotation {rot0.mean():.3f} -> {rot1.mean():.3f} deg, "
                     f"centre {shift0.mean():.4f} -> {shift1.mean():.4f} (normalized units, cameras at radius 1)")
        notes.append(f"  after aligning each set to the truth (similarity): rotation {noisy_rot2.mean():.3f} -> "
                     f"{rot2.mean():.3f} deg, centre {noisy_shift2.mean():.4f} -> {shift2.mean():.4f}")
    if "blur" in cases:
        print("blur")
        capture, names = evidence.with_motion_blur(demo)
        _, plain = run(capture)
        trainer, fixed = run(capture, "blur")
        rows.append(("blur", "blur", plain, fixed))
        module = trainer.modules[0]
        with torch.no_grad():
            masks = np.array([float(module.mask(module.embeds[i], args.size, args.size).mean())
                              for i in range(len(capture.train))])
        is_blurred = np.array([v.name in names for v in capture.train])
        notes.append(f"blur: mean mask {masks[is_blurred].mean():.3f} on blurred photos, "
                     f"{masks[~is_blurred].mean():.3f} on sharp ones")

    print()
    print(f"held-out PSNR (dB); clean capture, no module: {clean:.2f}")
    print(f"{'case':<11} {'module':<11} {'without':>8} {'with':>8} {'gain':>7} {'recovered':>10}")
    for case, module, plain, fixed in rows:
        lost = clean - plain
        recovered = f"{(fixed - plain) / lost:9.0%}" if lost > 0.05 else "      n/a"
        print(f"{case:<11} {module:<11} {plain:8.2f} {fixed:8.2f} {fixed - plain:+7.2f} {recovered:>10}")
    for note in notes:
        print(note)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
