"""SOG rate-distortion, splatforge against splat-transform (PlayCanvas, 3.7.0 in tools/js), in one run:
size and ratio against INRIA PLY vs PSNR at several settings of each writer, on the garden points
(degree 0) and on the trained demo scene (degree 3); then, per attribute, what each writer's
quantization of that attribute alone costs.

    python benchmarks/compress_rd.py                      # garden + demo scene trained to the end
    python benchmarks/compress_rd.py --train-seconds 600  # ... the demo scene trained for 600 s
    python benchmarks/compress_rd.py --scenes garden      # one scene

Every file, ours and theirs, is decoded by splat-transform (SOG -> PLY) and the decoded scene is
rendered from the same 8 orbit views as the original (our rasterizer, `compress.quality`):
"vs orig dB" is the PSNR between the two. On the demo scene "drop dB" is what the file loses of
the scene's PSNR on the capture's held-out photos (what `splatforge eval` reports).

Per attribute: the original scene with one attribute replaced by its decoded value (means,
scales, quaternions, sh0 colours, opacity, SH rest), rendered and compared the same way. Ours are
written in Morton order so that texel i's Gaussian is known; splat-transform's decoded Gaussians
are matched to the originals by their 16-bit position codes (which it computes by truncation),
ties broken by the other attributes.

Needs node and tools/js (scripts/setup_thirdparty.sh). Times are wall and CPU seconds of each
writer on this machine, noisy on a shared one.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from compress import GARDEN, TestViews, trained_demo_scene

from splatforge.compress.quality import orbit_cameras, render_views
from splatforge.compress.sog import SogConfig, compress_scene
from splatforge.core.gaussians import Gaussians
from splatforge.core.metrics import psnr
from splatforge.io.formats.common import arrays_of, morton_order
from splatforge.io.formats.sog import log_transform, sog_size
from splatforge.io.points_capture import load_point_capture
from splatforge.io.scene import load_scene, save_scene

REPO = Path(__file__).resolve().parents[1]
SPLAT_TRANSFORM = REPO / "tools" / "js" / "node_modules" / "@playcanvas" / "splat-transform" / "bin" / "cli.mjs"
ATTRIBUTES = ("means", "scales", "quats", "sh0", "opacities", "shN")
# Our settings: how far a Gaussian may move (position_slack) is what trades size for PSNR.
OUR_SLACKS = (0.0, 0.025, 0.05, 0.1, 0.2)
# Theirs: WebP effort changes the size; SH k-means iterations the degree-3 palette.
# Their size barely moves with WebP effort (9 saved 84 bytes of 959,281 on the garden points, in
# 398 s) and their SH k-means takes minutes on the CPU (a 16,384-entry palette for 20k Gaussians),
# so their settings here are the default and fewer SH iterations.
THEIR_SETTINGS = {0: [("default", ())], 3: [("default", ()), ("-i 3", ("-i", "3"))]}
# --out DIR keeps every file; a rerun with the same DIR reuses splat-transform's SOG files in it.


def splat_transform(src: Path, dst: Path, *options: str) -> tuple[float, float]:
    """Run splat-transform as its users do; (wall, CPU) seconds. -g cpu: no WebGPU here."""
    node = shutil.which("node")
    if node is None or not SPLAT_TRANSFORM.is_file():
        raise SystemExit("splat-transform needs node and tools/js/node_modules: run scripts/setup_thirdparty.sh")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    run = subprocess.run([node, str(SPLAT_TRANSFORM), "-q", "-w", "-g", "cpu", *options, str(src), str(dst)],
                         capture_output=True, text=True, check=False)
    if run.returncode:
        raise SystemExit(f"splat-transform {src.name} -> {dst.name} failed:\n{run.stderr or run.stdout}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - start, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def decoded_by_splat_transform(sog: Path) -> Gaussians:
    ply = sog.with_suffix(".decoded.ply")
    splat_transform(sog, ply)
    return load_scene(ply)


class Judge:
    """Renders of the original from orbit views (and, with a capture, its held-out PSNR)."""

    def __init__(self, g: Gaussians, views: int, width: int, height: int, tests: TestViews | None):
        self.cams, self.size, self.views = orbit_cameras(g, views, width, height), (width, height), views
        self.reference = render_views(g, *self.cams, *self.size)
        self.tests = tests
        self.baseline = tests.psnr(g) if tests else float("nan")

    def psnr(self, g: Gaussians) -> float:
        images = render_views(g, *self.cams, *self.size)
        return float(np.mean([psnr(images[i], self.reference[i]) for i in range(self.views)]))

    def drop(self, g: Gaussians) -> float:
        return self.baseline - self.tests.psnr(g) if self.tests else float("nan")


def curves(name: str, g: Gaussians, ply: Path, judge: Judge, out: Path, default: SogConfig,
           their_settings: int = 0) -> list[dict]:
    ply_size = os.path.getsize(ply)
    rows = []

    def row(tool: str, setting: str, path: Path, wall: float, cpu: float) -> None:
        decoded = decoded_by_splat_transform(path)
        size = sog_size(path)
        rows.append({"scene": name, "tool": tool, "setting": setting, "size": size, "ratio": ply_size / size,
                     "wall": wall, "cpu": cpu, "psnr": judge.psnr(decoded), "drop": judge.drop(decoded),
                     "path": path, "decoded": decoded})
        r = rows[-1]
        print(f"  {name} {tool} {setting}: {r['ratio']:.2f}x {r['psnr']:.2f} dB ({wall:.0f} s)", file=sys.stderr,
              flush=True)

    settings = THEIR_SETTINGS[3 if g.sh_degree else 0]
    for setting, options in settings[:their_settings or len(settings)]:
        path = out / f"{name}_theirs_{len(rows)}.sog"
        if path.is_file():  # kept in --out by an earlier run: their SH k-means takes minutes
            row("splat-transform", f"{setting} (kept)", path, float("nan"), float("nan"))
        else:
            row("splat-transform", setting, path, *splat_transform(ply, path, *options))
    for slack in sorted({*OUR_SLACKS, default.position_slack}):
        path = out / f"{name}_ours_{slack:g}.sog"
        start, cpu = time.perf_counter(), time.process_time()
        compress_scene(g, path, replace(default, position_slack=slack))
        setting = f"slack {slack:g}" + (" (default)" if slack == default.position_slack else "")
        row("splatforge", setting, path, time.perf_counter() - start, time.process_time() - cpu)
    return rows


def interpolate(x: float, xs: list[float], ys: list[float]) -> float:
    """y at x on the piecewise-linear curve through (xs, ys); nan outside it."""
    order = np.argsort(xs)
    xs, ys = np.asarray(xs)[order], np.asarray(ys)[order]
    return float(np.interp(x, xs, ys)) if xs[0] <= x <= xs[-1] else float("nan")


def crossing(rows: list[dict]) -> list[str]:
    """For each of splat-transform's points: our PSNR at its size and our size at its PSNR (when
    its file is larger than our largest, our PSNR there is at least that of our largest)."""
    ours = [r for r in rows if r["tool"] == "splatforge"]
    largest = max(ours, key=lambda r: r["size"])
    lines = []
    for t in (r for r in rows if r["tool"] == "splat-transform"):
        at_size = interpolate(t["size"], [r["size"] for r in ours], [r["psnr"] for r in ours])
        at = f"{at_size:.2f} dB ({at_size - t['psnr']:+.2f})"
        if t["size"] > largest["size"]:
            gain = largest["psnr"] - t["psnr"]
            at = f">= {largest['psnr']:.2f} dB ({gain:+.2f}; our {largest['setting']} is smaller)"
        at_psnr = interpolate(t["psnr"], [r["psnr"] for r in ours], [r["size"] for r in ours])
        lines.append(f"{t['scene']}: splat-transform {t['setting']} {t['size']:,} B at {t['psnr']:.2f} dB; ours at "
                     f"that size {at}, at that PSNR {at_psnr:,.0f} B ({100 * (at_psnr / t['size'] - 1):+.1f}%)")
    return lines


# ------------------------------------------------------------------------------- per attribute


def hybrid(g: Gaussians, decoded: Gaussians, index: np.ndarray, attribute: str) -> Gaussians:
    """`g` with one attribute taken from `decoded` (decoded Gaussian i is g's index[i])."""
    fields = {k: getattr(g, k).clone() for k in ATTRIBUTES}
    fields[attribute][torch.from_numpy(index)] = getattr(decoded, attribute).to(fields[attribute].dtype)
    return Gaussians(**fields)


def their_match(g: Gaussians, decoded: Gaussians, meta: dict) -> np.ndarray:
    """index[i] = the Gaussian of `g` that splat-transform's decoded Gaussian i came from."""
    mins, maxs = np.asarray(meta["means"]["mins"]), np.asarray(meta["means"]["maxs"])
    span = np.where(maxs > mins, maxs - mins, 1.0)
    a, b = arrays_of(g), arrays_of(decoded)
    codes_a = np.floor(65535 * (log_transform(a.means.astype(np.float64)) - mins) / span)  # it truncates
    codes_b = np.rint(65535 * (log_transform(b.means.astype(np.float64)) - mins) / span)

    def keys(x, codes):  # lexsort's last key is the primary one; decoding is monotone in each
        return [x.opacities, *x.scales.T, *x.sh0.T, *codes.T[::-1]]

    ia, ib = np.lexsort(keys(a, codes_a)), np.lexsort(keys(b, codes_b))
    index = np.empty(len(b), np.int64)
    index[ib] = ia
    same = (codes_a[index] == codes_b).all(1).mean()
    if same < 0.999:
        raise SystemExit(f"could not match splat-transform's Gaussians to the originals ({same:.1%} matched)")
    return index


def per_attribute(name: str, g: Gaussians, curve_rows: list[dict], judge: Judge) -> list[dict]:
    """Per attribute, from the curves' files: our default (Morton order) and their default."""
    ours = next(r for r in curve_rows if r["tool"] == "splatforge" and r["setting"].endswith("(default)"))
    theirs = next(r for r in curve_rows if r["tool"] == "splat-transform" and r["setting"].startswith("default"))
    with zipfile.ZipFile(theirs["path"]) as zf:
        meta = json.loads(zf.read("meta.json"))
    matches = {"splatforge": (ours["decoded"], morton_order(arrays_of(g).means)),
               "splat-transform": (theirs["decoded"], their_match(g, theirs["decoded"], meta))}
    rows = []
    for attribute in ATTRIBUTES:
        if attribute == "shN" and not g.sh_degree:
            continue
        row = {"scene": name, "attribute": attribute}
        for tool, (decoded, index) in matches.items():
            row[tool] = judge.psnr(hybrid(g, decoded, index, attribute))
        rows.append(row)
        print(f"  {name} {attribute}: ours {row['splatforge']:.2f} dB, theirs {row['splat-transform']:.2f} dB",
              file=sys.stderr, flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", nargs="+", choices=("garden", "demo"), default=("garden", "demo"))
    ap.add_argument("--their-settings", type=int, default=0,
                    help="only the first N of splat-transform's settings per scene (0: all)")
    ap.add_argument("--train-seconds", type=float, default=None,
                    help="time budget for training the demo scene (default: all of its 3,000 steps)")
    ap.add_argument("--garden", type=Path, default=GARDEN)
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--no-attributes", action="store_true", help="skip the per-attribute table")
    ap.add_argument("--out", type=Path, default=None,
                    help="folder for the files (default: a temporary one); a rerun reuses splat-transform's there")
    args = ap.parse_args()

    default = SogConfig()
    if default.sort != "morton":
        raise SystemExit("the per-attribute table needs the default SOG layout to be Morton order")
    curve_rows, attr_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        for name in args.scenes:
            if name == "garden":
                g, tests = load_point_capture(args.garden).to_gaussians(opacity=0.8), None
            else:
                capture_dir, trained = trained_demo_scene(args.train_seconds)
                g, tests = load_scene(trained), TestViews(capture_dir)
            name = f"{name}-d{g.sh_degree}"
            ply = out / f"{name}.ply"
            save_scene(g, ply)
            judge = Judge(g, args.views, args.width, args.height, tests)
            rows = curves(name, g, ply, judge, out, default, args.their_settings)
            if not args.no_attributes:
                attr_rows += per_attribute(name, g, rows, judge)
            curve_rows += rows

    print(f"\n{'scene':<11}{'writer':<17}{'setting':<20}{'bytes':>12}{'vs PLY':>9}{'vs orig dB':>11}{'drop dB':>9}"
          f"{'wall s':>8}{'CPU s':>7}")
    for r in curve_rows:
        print(f"{r['scene']:<11}{r['tool']:<17}{r['setting']:<20}{r['size']:>12,}{r['ratio']:>8.2f}x{r['psnr']:>11.2f}"
              f"{r['drop']:>9.3f}{r['wall']:>8.1f}{r['cpu']:>7.1f}")
    print()
    for scene in dict.fromkeys(r["scene"] for r in curve_rows):
        for line in crossing([r for r in curve_rows if r["scene"] == scene]):
            print(line)
    if attr_rows:
        print("\nPSNR (dB) of the original with one attribute quantized (decoded by splat-transform)")
        print(f"{'scene':<11}{'attribute':<11}{'splatforge':>11}{'splat-transform':>16}")
        for r in attr_rows:
            print(f"{r['scene']:<11}{r['attribute']:<11}{r['splatforge']:>11.2f}{r['splat-transform']:>16.2f}")


if __name__ == "__main__":
    main()
