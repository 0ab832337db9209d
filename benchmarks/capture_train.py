"""A real capture end to end, trained for a time budget, held-out PSNR / SSIM per view and their mean,
from every starting point. Two bundled captures (`--scene`):

  fox     50 phone-video frames of a fox figurine, 288x512 portrait, with instant-ngp's transforms.json
          (tests/data/fox, NVIDIA Source Code License-NC: research and evaluation only)
  buddha  67 handheld grayscale photos of a Buddha head, 512x288 (tests/data/buddha, CC BY 4.0)

Rows:

  sfm               `splatforge capture` (pycolmap SfM) on the photos, then the default training
                    (the schedule fitted to the budget, SfM points to start from)
  sfm-truncated     the same capture with gsplat's 30,000-step schedule cut by the budget (the reference
                    for "fitted vs truncated")
  sfm-no-sky        the default without the 4,000 far "sky" points (an indoor scene has no sky)
  json-triangulate  a transforms.json with the dataset's own cameras (instant-ngp's for the fox,
                    AliceVision's for the Buddha; no points): points triangulated from the photos with
                    the poses held fixed
  json-random       the same transforms.json, random points in the cameras' common view

Every 8th photo (by name) is held out in every row, so all rows score the same views. SfM runs once
(its time is printed; the capture is reused from out/bench/ on later runs). Rows run one after the
other, each in its own process. Nothing here asserts a time.

    python benchmarks/capture_train.py                                # fox, every row, 300 s each
    python benchmarks/capture_train.py --scene buddha --rows sfm --seconds 900
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

DATA = ROOT / "tests" / "data"
SCENES = {"fox": "50 phone-video frames of 288x512", "buddha": "67 photos of 512x288"}
ROWS = {
    "sfm": dict(capture="sfm", init="auto", config={}),
    "sfm-truncated": dict(capture="sfm", init="auto", config={"max_steps": 30_000}),
    "sfm-no-sky": dict(capture="sfm", init="auto", config={"sky_points": 0}),
    "json-triangulate": dict(capture="json", init="triangulate", config={}),
    "json-random": dict(capture="json", init="random", config={}),
}


def _names(scene: str) -> list[str]:
    return sorted(p.name for p in (DATA / scene / "images").glob("*.jpg"))


def held_out(scene: str) -> list[str]:
    return _names(scene)[::8]


def make_sfm_capture(scene: str, folder: Path) -> dict:
    from splatforge.capture.sfm import SfmConfig, run_sfm

    report_file = folder / "sfm_report.json"
    if not report_file.is_file():
        start = time.perf_counter()
        report = run_sfm(DATA / scene / "images", folder, SfmConfig(max_image_size=512, progress=False))
        print(report.format())
        print(f"SfM: {time.perf_counter() - start:.1f} s in all")
    return json.loads(report_file.read_text())


def make_json_capture(scene: str, folder: Path) -> Path:
    """The dataset's own cameras as a transforms.json, no points: the fox ships instant-ngp's; the
    Buddha's AliceVision projection matrices are written as a nerfstudio one (OpenGL camera axes)."""
    if scene == "fox":
        return DATA / "fox" / "transforms.json"
    from capture.test_sfm_data import dataset_cameras

    BUDDHA = DATA / "buddha"
    names = _names(scene)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    size = (512, 288)
    Ks, viewmats = dataset_cameras(names, size)
    frames = []
    for name, K, viewmat in zip(names, Ks, viewmats):
        shutil.copy(BUDDHA / "images" / name, folder / "images" / name)
        c2w = np.linalg.inv(viewmat)
        c2w[:3, 1:3] *= -1  # OpenCV -> OpenGL camera axes
        frames.append({"file_path": f"images/{name}", "transform_matrix": c2w.tolist(),
                       "fl_x": K[0, 0], "fl_y": K[1, 1], "cx": K[0, 2], "cy": K[1, 2], "w": size[0], "h": size[1]})
    path = folder / "transforms.json"
    path.write_text(json.dumps({"camera_model": "PINHOLE", "frames": frames}, indent=1))
    return path


def run_row(name: str, scene: str, data: Path, seconds: float) -> dict:
    from splatforge.capture import load_capture
    from splatforge.core.metrics import psnr, ssim
    from splatforge.train.run import RunOptions, run_training
    from splatforge.train.trainer import TrainConfig, Trainer

    row = ROWS[name]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        names = held_out(scene)
        report = Path(data) / "sfm_report.json"
        if report.is_file():  # SfM may leave a photo out: hold out those of the others
            registered = set(json.loads(report.read_text())["registered"])
            names = [n for n in names if n in registered]
        capture = load_capture(data, test_list=names, init=row["init"], cache_dir=tmp)
        load_seconds = time.perf_counter() - start
        warm = Trainer(capture, TrainConfig(max_steps=2))  # compile / load the kernels outside the budget
        warm.train_step()
        warm.evaluate(capture.test[:1])
        holder = {}
        result = run_training(capture, Path(tmp) / "run", TrainConfig(**row["config"]),
                              RunOptions(max_seconds=seconds, progress=False, renders=False),
                              on_step=lambda trainer, record: holder.setdefault("trainer", trainer))
    trainer = holder["trainer"]
    per_view = {}

    def score(view, rgb, target):
        per_view[Path(view.name).name] = (float(psnr(rgb[None], target[None])), float(ssim(rgb[None], target[None])))

    trainer.evaluate(on_view=score)
    return {"row": name, "points": len(capture.points), "points_source": capture.points_source,
            "load_seconds": load_seconds, "steps": trainer.step, "count": trainer.num_gaussians,
            "psnr": result.metrics["test"]["psnr"], "ssim": result.metrics["test"]["ssim"], "per_view": per_view,
            "train_psnr": trainer.evaluate(trainer.capture.train[::6])["psnr"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300.0, help="training time budget per row")
    parser.add_argument("--scene", default="fox", choices=list(SCENES), help="which bundled capture")
    parser.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--work", type=Path, default=None, help="where the captures are made (out/bench/SCENE)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # internal: run one row and print its JSON
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row:
        print(json.dumps(run_row(args.row, args.scene, args.data, args.seconds)))
        return
    work = args.work or Path("out/bench") / args.scene

    captures = {}
    if any(ROWS[r]["capture"] == "sfm" for r in args.rows):
        report = make_sfm_capture(args.scene, work / "sfm")
        print(f"SfM capture: {len(report['registered'])} of {report['num_images']} photos registered, "
              f"{report['num_points']:,} points")
        captures["sfm"] = work / "sfm"
    if any(ROWS[r]["capture"] == "json" for r in args.rows):
        captures["json"] = make_json_capture(args.scene, work / "json")
    results = []
    for name in args.rows:
        proc = subprocess.run([sys.executable, __file__, "--row", name, "--scene", args.scene, "--seconds", str(args.seconds),
                               "--data", str(captures[ROWS[name]["capture"]])], capture_output=True, text=True)
        if proc.returncode or not proc.stdout.strip():
            raise SystemExit(f"row {name} failed:\n{proc.stderr}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"  {name}: {r['points']:,} {r['points_source']} points, {r['steps']} steps, {r['count']:,} Gaussians, "
              f"held-out PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.4f} (load {r['load_seconds']:.1f} s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))

    views = sorted({v for r in results for v in r["per_view"]})
    ref = results[0]
    print(f"\n{args.scene}, {SCENES[args.scene]}, {len(views)} held out; {args.seconds:g} s of training per row")
    head = (f"{'row':<17} {'points':>7} {'steps':>6} {'Gaussians':>9} {'train':>6} {'PSNR':>6} {'d PSNR':>6} "
            f"{'SSIM':>6} {'min':>6}")
    print(head + "".join(f" {Path(v).stem[-3:]:>6}" for v in views))
    for r in results:
        scores = [r["per_view"].get(v, (float("nan"),))[0] for v in views]
        print(f"{r['row']:<17} {r['points']:>7,} {r['steps']:>6} {r['count']:>9,} {r['train_psnr']:>6.2f} {r['psnr']:>6.2f} "
              f"{r['psnr'] - ref['psnr']:>+6.2f} {r['ssim']:>6.4f} {np.nanmin(scores):>6.2f}"
              + "".join(f" {s:>6.2f}" for s in scores))
    print(f"(train: mean PSNR of every 6th training view; d PSNR: against the {ref['row']} row of this run; "
          "per-view columns: held-out PSNR by photo number)")


if __name__ == "__main__":
    main()
