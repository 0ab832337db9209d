"""SHARP in ONNX Runtime: the whole-pipeline graph at fp32/fp16/int8, and the full-size model.

    python benchmarks/predict_onnx.py precision        # small preset, fixture + real photos
    python benchmarks/predict_onnx.py full --workdir /tmp/sharp-onnx
                                                       # default network at 1536x1536, random
                                                       # weights (exports ~3 GB into --workdir once)

`precision`: for each variant of `export-onnx --full` (fp32, fp16 weights, int8 dynamic
quantization) on each photo: file size, ONNX Runtime CPU seconds and wall seconds per prediction
(least of 5 each, variants run in turn in this process; ratio of CPU seconds to fp32), the largest and mean error of the
Gaussians against fp32 (means in m, covariances in m^2, colours, opacities), and the PSNR between
renders of the two predictions (the input view and a forward-moved view, splatforge's CPU
rasterizer). Photos: the parity fixture, two Buddha photos (grayscale), a render of the demo scene
(colour), and a fox photo when tests/data/fox exists.

`full`: the official architecture at its native 1536x1536 input, seeded random weights. Each row
runs in its own subprocess, in turn: torch forward (the network alone), ONNX Runtime fp32 / fp16
/ int8 (the whole graph: resize, network, unprojection), unprojection + PLY write of torch's
output. ONNX Runtime runs with splatforge's `session_options` (see there: spinning off, so its
CPU seconds are work done) and the exporter's defaults (attention as MultiHeadAttention). Peak
memory is each subprocess's maximum resident set size (for ONNX Runtime also after the session
load); wall and CPU seconds are the timed call's. Ratios are to torch; torch's and ONNX Runtime's
time by op type follow the table. `--preset small` runs the same steps in seconds (a smoke test). Then the Gaussians' errors of each ORT variant against torch
(fp32) or ORT fp32 (fp16, int8). Goals: ORT <= 0.7x torch; peak below ml-sharp's 7.2 GiB;
unprojection + PLY <= 2 s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ("means", "scales", "quats", "colors", "opacities")
THREADS = 2


def clock(fn):
    """(result, wall seconds, CPU seconds of this process) of one call."""
    cpu = time.process_time()
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start, time.process_time() - cpu


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def gaussian_errors(a, b) -> dict[str, tuple[float, float]]:
    """(max, mean) absolute difference of means, covariances, colours and opacities."""
    from splatforge.predict.unproject import covariances

    pairs = {k: (getattr(a, k).double(), getattr(b, k).double()) for k in ("means", "colors", "opacities")}
    pairs["covariances"] = (covariances(a.quats.double(), a.scales.double()),
                            covariances(b.quats.double(), b.scales.double()))
    return {k: (float((x - y).abs().max()), float((x - y).abs().mean())) for k, (x, y) in pairs.items()}


def render_psnr(a, b, max_side: int = 320) -> float:
    """PSNR (dB) between renders of two predictions: the input view and a forward-moved view."""
    from splatforge.predict.render import TrajectoryParams, render_trajectory_frames

    params = TrajectoryParams(num_steps=3, max_side=max_side)  # t = 0 (input view), 0.5, 1 (= 0)
    frames_a, _ = render_trajectory_frames(a, params)
    frames_b, _ = render_trajectory_frames(b, params)
    mse = float(np.mean([(x - y) ** 2 for x, y in zip(frames_a[:2], frames_b[:2])]))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def demo_photo(folder: Path) -> Path:
    from splatforge.demo.capture import make_demo_capture

    capture = make_demo_capture(folder / "demo", num_views=3, width=320, height=240)
    return min((capture / "images").glob("*"))


# --- precision: the small preset, in this process ------------------------------------------------

def bench_precision(workdir: Path) -> None:
    from splatforge.predict import build_predictor, predict_image
    from splatforge.predict.api import load_photo
    from splatforge.predict.onnx import (
        PRECISIONS,
        convert_onnx,
        export_onnx,
        load_onnx_predictor,
    )

    data = ROOT / "tests" / "predict" / "data"
    model = build_predictor("small", checkpoint=data / "sharp_small_state_dict.pt")
    fixture = np.load(data / "sharp_small_io.npz")
    photos = {"fixture 108x72": (fixture["image"], float(fixture["f_px"]))}
    for name in ("00001.jpg", "00030.jpg"):
        photos[f"buddha {name} (gray)"] = (ROOT / "tests/data/buddha/images" / name, None)
    photos["demo render (colour)"] = (demo_photo(workdir), None)
    fox = sorted((ROOT / "tests/data/fox/images").glob("*.jpg"))
    if fox:
        photos[f"fox {fox[0].name} (colour)"] = (fox[0], None)
    fp32 = export_onnx(model, workdir / "small_fp32.onnx", full=True)
    paths = {"fp32": fp32}
    for precision in PRECISIONS[1:]:
        paths[precision] = convert_onnx(fp32, workdir / f"small_{precision}.onnx", precision)
    sessions = {p: load_onnx_predictor(path, threads=THREADS) for p, path in paths.items()}
    print(f"small preset ({model.internal_resolution()} px input); sizes: "
          + ", ".join(f"{p} {path.stat().st_size / 2**20:.2f} MiB "
                      f"({path.stat().st_size / fp32.stat().st_size:.2f}x)" for p, path in paths.items()))
    header = (f"{'photo':<28} {'variant':<6} {'wall s':>7} {'cpu s':>7} {'x fp32':>6} "
              f"{'means max/mean (m)':>20} {'cov max/mean':>18} {'colour max/mean':>16} "
              f"{'opac max/mean':>16} {'PSNR dB':>8}")
    print(header)
    for label, (photo, f_px) in photos.items():
        rgb, _ = load_photo(photo)
        results = {}
        for precision, session in sessions.items():
            def run(session=session, rgb=rgb, f_px=f_px):
                return predict_image((rgb * 255).round().astype(np.uint8), session, backend="onnx",
                                     focal_length_px=f_px)
            run()
            runs = [clock(run) for _ in range(5)]  # the least disturbed of 5: wall, CPU separately
            results[precision] = (runs[0][0], min(r[1] for r in runs), min(r[2] for r in runs))
        base, _, base_cpu = results["fp32"]
        for precision, (pred, wall, cpu) in results.items():
            if precision == "fp32":
                print(f"{label:<28} {precision:<6} {wall:>7.3f} {cpu:>7.3f} {1.0:>6.2f}")
                continue
            e = gaussian_errors(base, pred)
            print(f"{label:<28} {precision:<6} {wall:>7.3f} {cpu:>7.3f} {cpu / base_cpu:>6.2f} "
                  + " ".join(f"{e[k][0]:>9.1e}/{e[k][1]:<8.1e}" for k in
                             ("means", "covariances", "colors", "opacities"))
                  + f" {render_psnr(base, pred):>8.2f}")


# --- full: the official size, one subprocess per row ---------------------------------------------

def save_prediction(pred, path: Path) -> None:
    np.savez(path, **{k: getattr(pred, k).numpy() for k in FIELDS},
             focal_length_px=pred.focal_length_px, image_size=np.array(pred.image_size))


def load_prediction(path: Path):
    from splatforge.predict import Prediction

    with np.load(path) as d:
        return Prediction(*(torch.from_numpy(d[k]) for k in FIELDS), float(d["focal_length_px"]),
                          tuple(int(x) for x in d["image_size"]))


def full_photo() -> Path:
    return ROOT / "tests/data/buddha/images/00001.jpg"


def torch_op_times(prof, most: int = 8) -> list[tuple[str, float]]:
    """Seconds per aten op in a torch profile (self time, so nested ops are not counted twice)."""
    rows = [(e.key, e.self_cpu_time_total / 1e6) for e in prof.key_averages()]
    return sorted(rows, key=lambda kv: -kv[1])[:most]


def op_times(profile: Path, most: int = 8) -> list[tuple[str, float]]:
    """Seconds per op type in an ONNX Runtime profile, largest first."""
    totals: dict[str, float] = {}
    for event in json.loads(profile.read_text()):
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            op = event["args"]["op_name"]
            totals[op] = totals.get(op, 0.0) + event["dur"] / 1e6
    profile.unlink()
    return sorted(totals.items(), key=lambda kv: -kv[1])[:most]


def step(name: str, workdir: Path, preset: str) -> dict:
    """One row of the full-size table, run in a subprocess of its own."""
    torch.set_num_threads(THREADS)
    from splatforge.predict import build_predictor, save_ply
    from splatforge.predict.api import load_photo, network_input, unproject
    from splatforge.predict.focal import focal_length_35mm, focal_mm_to_px
    from splatforge.predict.onnx import (
        OnnxPredictor,
        convert_onnx,
        export_onnx,
        session_options,
    )
    from splatforge.predict.sharp import SharpGaussians

    rgb, tags = load_photo(full_photo())
    height, width = rgb.shape[:2]
    f_px = focal_mm_to_px(focal_length_35mm(tags), width, height)
    out: dict = {}
    if name == "export":
        model, out["build_s"], _ = clock(lambda: build_predictor(preset, seed=0))
        _, out["wall"], out["cpu"] = clock(lambda: export_onnx(model, workdir / "fp32.onnx", full=True))
    elif name.startswith("convert-"):
        precision = name.split("-", 1)[1]
        _, out["wall"], out["cpu"] = clock(
            lambda: convert_onnx(workdir / "fp32.onnx", workdir / f"{precision}.onnx", precision))
    elif name == "torch":
        model, out["build_s"], _ = clock(lambda: build_predictor(preset, seed=0))
        image = network_input(rgb, model.internal_resolution())
        factor = torch.tensor([f_px / width], dtype=torch.float32)
        with torch.no_grad(), torch.profiler.profile() as prof:
            raw, out["wall"], out["cpu"] = clock(lambda: model(image, factor))
        out["ops"] = torch_op_times(prof)
        np.savez(workdir / "torch_raw.npz", **{k: v.numpy() for k, v in raw._asdict().items()},
                 internal_size=model.internal_resolution())
        out["gaussians"] = int(raw.mean_vectors.shape[1])
        out["size"] = model.internal_resolution()
    elif name.startswith("ort-"):
        precision = name.split("-", 1)[1]
        options = session_options(THREADS)
        # Per-node timings (microseconds of overhead per node, against minutes of run).
        options.enable_profiling = True
        options.profile_file_prefix = str(workdir / f"profile_{precision}")
        session, out["load_s"], _ = clock(lambda: OnnxPredictor(workdir / f"{precision}.onnx",
                                                                options=options))
        out["load_peak_gib"] = peak_gib()
        pred, out["wall"], out["cpu"] = clock(lambda: session.predict(rgb, f_px))
        out["ops"] = op_times(Path(session.session.end_profiling()))
        save_prediction(pred, workdir / f"pred_{precision}.npz")
        out["gaussians"] = pred.num_gaussians
    elif name == "unproject-ply":
        with np.load(workdir / "torch_raw.npz") as d:
            raw = SharpGaussians(*(torch.from_numpy(d[k]) for k in SharpGaussians._fields))
            size = int(d["internal_size"])

        def run():
            pred = unproject(raw, f_px, (width, height), size)
            save_ply(pred, workdir / "torch.ply")
            return pred

        pred, out["wall"], out["cpu"] = clock(run)
        save_prediction(pred, workdir / "pred_torch.npz")
    else:
        raise SystemExit(f"unknown step {name}")
    out["peak_gib"] = peak_gib()
    out["load"] = os.getloadavg()[0]  # the machine's 1-minute load average as the row ended
    return out


def run_step(name: str, workdir: Path, preset: str, reuse: bool = False) -> dict:
    """Run one step in a fresh interpreter (its own peak memory); its result is kept in
    `workdir`, and with `reuse` a kept result is returned instead of running again."""
    cached = workdir / f"step_{name}.json"
    if reuse and cached.exists():
        return json.loads(cached.read_text())
    proc = subprocess.run([sys.executable, __file__, "_step", name, "--workdir", str(workdir),
                           "--preset", preset],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"step {name} failed:\n{proc.stderr[-3000:]}")
    cached.write_text(proc.stdout.strip().splitlines()[-1])
    return json.loads(cached.read_text())


def model_gib(path: Path) -> float:
    path = Path(os.path.realpath(path))
    data = path.with_name(path.name + ".data")
    return (path.stat().st_size + (data.stat().st_size if data.exists() else 0)) / 2**30


def bench_full(workdir: Path, variants: list[str], reuse: bool, preset: str) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / "fp32.onnx").exists():
        r = run_step("export", workdir, preset)
        print(f"export (once): {r['wall']:.0f} s wall, {r['cpu']:.0f} s CPU, peak {r['peak_gib']:.2f} GiB")
    rows = {}
    for name in ["torch", "ort-fp32", *(f"ort-{p}" for p in variants), "unproject-ply"]:
        precision = name[4:] if name.startswith("ort-") else "fp32"
        if not (workdir / f"{precision}.onnx").exists():
            r = run_step(f"convert-{precision}", workdir, preset)
            print(f"convert to {precision} (once): {r['wall']:.0f} s wall, {r['cpu']:.0f} s CPU, "
                  f"peak {r['peak_gib']:.2f} GiB")
        rows[name] = run_step(name, workdir, preset, reuse)
        print(f"  ran {name}: {rows[name]['wall']:.1f} s", flush=True)
    sizes = {p: model_gib(workdir / f"{p}.onnx") for p in ["fp32", *variants]}
    base = rows["torch"]["wall"]
    size = rows["torch"]["size"]
    print(f"\nSHARP {preset}, {size}x{size}, {rows['torch']['gaussians']:,} Gaussians, {THREADS} threads")
    print(f"{'row':<16} {'wall s':>8} {'cpu s':>8} {'wall/torch':>10} {'cpu/torch':>9} {'peak GiB':>9}  note")
    for name, r in rows.items():
        note = ""
        if name.startswith("ort-"):
            note = (f"model {sizes[name[4:]]:.2f} GiB, session load {r['load_s']:.1f} s, "
                    f"{r['load_peak_gib']:.2f} GiB after it")
        elif name == "torch":
            note = f"network only; build {r['build_s']:.0f} s"
        ratios = (f"{r['wall'] / base:>10.2f} {r['cpu'] / rows['torch']['cpu']:>9.2f}"
                  if name != "unproject-ply" else f"{'':>10} {'':>9}")
        note += f"{'; ' if note else ''}machine load {r.get('load', float('nan')):.1f}"
        print(f"{name:<16} {r['wall']:>8.1f} {r['cpu']:>8.1f} {ratios} {r['peak_gib']:>9.2f}  {note}")
    for name, r in rows.items():
        if "ops" in r:
            total = sum(t for _, t in r["ops"])
            print(f"  {name} time by op type{' (self)' if name == 'torch' else ''}: " + ", ".join(f"{op} {t:.1f} s" for op, t in r["ops"])
                  + f" (top {len(r['ops'])}: {total:.1f} s)")
    reference = load_prediction(workdir / "pred_torch.npz")
    fp32 = load_prediction(workdir / "pred_fp32.npz")
    print(f"\n{'pair':<22} {'means max/mean (m)':>20} {'cov max/mean':>18} {'colour max/mean':>16} "
          f"{'opac max/mean':>16} {'PSNR dB':>8}")
    pairs = [("ORT fp32 vs torch", reference, fp32)]
    pairs += [(f"ORT {p} vs ORT fp32", fp32, load_prediction(workdir / f"pred_{p}.npz")) for p in variants]
    for label, a, b in pairs:
        e = gaussian_errors(a, b)
        print(f"{label:<22} " + " ".join(f"{e[k][0]:>9.1e}/{e[k][1]:<8.1e}" for k in
                                         ("means", "covariances", "colors", "opacities"))
              + f" {render_psnr(a, b):>8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["precision", "full", "_step"])
    parser.add_argument("name", nargs="?")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--variants", default="fp16,int8", help="ORT variants besides fp32 (full)")
    parser.add_argument("--preset", default="default",
                        help="full: the architecture (default: the official one; small: a smoke test "
                        "in a --workdir of its own)")
    parser.add_argument("--reuse", action="store_true",
                        help="full: take rows already measured in --workdir instead of running them again")
    args = parser.parse_args()
    if args.mode == "_step":
        print(json.dumps(step(args.name, args.workdir, args.preset)))
        return
    if args.mode == "precision":
        with tempfile.TemporaryDirectory() as tmp:
            bench_precision(Path(args.workdir or tmp))
        return
    if args.workdir is None:
        raise SystemExit("full needs --workdir (the exported models, ~3 GB, are kept there)")
    bench_full(args.workdir, [v for v in args.variants.split(",") if v], args.reuse, args.preset)


if __name__ == "__main__":
    main()
