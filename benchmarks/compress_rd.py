"""SOG rate-distortion, splatforge against splat-transform (PlayCanvas, 3.7.0 in tools/js), in one run:
size and ratio against INRIA PLY vs PSNR at several settings of each writer, on the garden points
(degree 0) and on the trained demo scene (degree-3 file); where our curve passes theirs; then, per
attribute, what each writer's quantization of that attribute alone costs.

    python benchmarks/compress_rd.py                      # garden + the demo scene trained 600 s
    python benchmarks/compress_rd.py --train-seconds 0    # ... the demo scene trained to the end
    python benchmarks/compress_rd.py --scenes garden      # one scene

The trained scene and every file are kept under --out (default out/bench/compress_rd; the demo
scene under out/bench): a rerun reuses splat-transform's files for the same PLY (their SH k-means
is the slow part: 108 CPU seconds for the 600 s demo scene's 16,384-entry palette).

Every file, ours and theirs, is decoded by splat-transform (SOG -> PLY) and the decoded scene is
rendered from the same 8 orbit views as the original (our rasterizer, `compress.quality`):
"vs orig dB" is the PSNR between the two. On the demo scene "drop dB" is what the file loses of
the scene's PSNR on the capture's held-out photos (what `splatforge eval` reports).

Our settings: position slack (how far a Gaussian may move) at the default SH palette (N / 32
entries), and on degree > 0 larger palettes at slack 0, up to splat-transform's own palette size.
Theirs: the default, and on degree > 0 fewer SH k-means iterations (-i); their size does not move
with any option (WebP effort 9 saved 84 bytes of 959,281 on the garden points, in 398 s).

Per attribute: the original scene with one attribute replaced by its decoded value (means,
scales, quaternions, sh0 colours, opacity, SH rest), rendered and compared the same way, for our
default, our file nearest theirs in size, and their default. Ours are written in Morton order so
that texel i's Gaussian is known; splat-transform's decoded Gaussians are matched to the
originals by their 16-bit position codes (which it computes by truncation), ties broken by the
other attributes.

Needs node and tools/js (scripts/setup_thirdparty.sh). Times are wall and CPU seconds of each
writer on this machine (theirs: the node process's), noisy on a shared one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from compress import BENCH_DIR, GARDEN, TestViews, trained_demo_scene

from splatforge.compress.quality import orbit_cameras, render_views
from splatforge.compress.sog import SogConfig, compress_scene, default_palette_size
from splatforge.core.gaussians import Gaussians
from splatforge.core.metrics import psnr
from splatforge.io.formats.common import arrays_of, morton_order
from splatforge.io.formats.sog import log_transform, sog_size
from splatforge.io.points_capture import load_point_capture
from splatforge.io.scene import load_scene, save_scene

REPO = Path(__file__).resolve().parents[1]
SPLAT_TRANSFORM = REPO / "tools" / "js" / "node_modules" / "@playcanvas" / "splat-transform" / "bin" / "cli.mjs"
ATTRIBUTES = ("means", "scales", "quats", "sh0", "opacities", "shN")
# Our settings: how far a Gaussian may move (position_slack) at the default palette, and (degree
# > 0) the SH palette's size at slack 0: "N/8" or "theirs" (splat-transform's size for N).
OUR_SLACKS = (0.0, 0.025, 0.05, 0.1, 0.2)
OUR_PALETTES = ("N/8", "theirs")
# Theirs: the default and (degree > 0) one SH k-means iteration instead of 10.
THEIR_SETTINGS = {0: [("default", ())], 3: [("default", ()), ("-i 1", ("-i", "1"))]}


def their_palette_size(n: int) -> int:
    """splat-transform 3.7's SH palette: the power of two of N / 1024 below it, times 1,024, at
    most 65,536 (16,384 for the 20k-Gaussian demo scene)."""
    return int(min(64.0, 2.0 ** np.floor(np.log2(max(n, 1) / 1024))) * 1024)


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


def our_settings(g: Gaussians, default: SogConfig) -> list[tuple[str, SogConfig]]:
    n = len(g)
    rows = [(f"slack {slack:g}" + (" (default)" if slack == default.position_slack else ""),
             replace(default, position_slack=slack)) for slack in sorted({*OUR_SLACKS, default.position_slack})]
    if g.sh_degree:
        sizes = {"N/8": max(default_palette_size(n), -(-n // 8)), "theirs": their_palette_size(n)}
        rows += [(f"palette {sizes[p]:,} ({p}), slack 0", replace(default, position_slack=0.0, palette_size=sizes[p]))
                 for p in OUR_PALETTES]
    return rows


def curves(name: str, g: Gaussians, ply: Path, judge: Judge, out: Path, default: SogConfig,
           their_settings: int = 0, their_fast: bool = False) -> list[dict]:
    ply_size = os.path.getsize(ply)
    digest = hashlib.sha256(ply.read_bytes()).hexdigest()[:10]  # kept files belong to this PLY only
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
    for i, (setting, options) in enumerate(settings[:their_settings or len(settings)]):
        if their_fast and options == () and len(settings) > 1:
            continue
        path = out / f"{name}_{digest}_theirs_{i}.sog"
        times = path.with_suffix(".times.json")
        if path.is_file() and times.is_file():  # kept in --out by an earlier run for the same PLY
            wall, cpu = json.loads(times.read_text())
            setting += " (kept)"
        else:
            wall, cpu = splat_transform(ply, path, *options)
            times.write_text(json.dumps([wall, cpu]))
        row("splat-transform", setting, path, wall, cpu)
    for setting, config in our_settings(g, default):
        path = out / f"{name}_ours_{len(rows)}.sog"
        start, cpu = time.perf_counter(), time.process_time()
        compress_scene(g, path, config)
        row("splatforge", setting, path, time.perf_counter() - start, time.process_time() - cpu)
    return rows


def interpolate(x: float, xs: list[float], ys: list[float]) -> float:
    """y at x on the piecewise-linear curve through (xs, ys); nan outside it."""
    order = np.argsort(xs)
    xs, ys = np.asarray(xs)[order], np.asarray(ys)[order]
    return float(np.interp(x, xs, ys)) if xs[0] <= x <= xs[-1] else float("nan")


def front(rows: list[dict]) -> list[dict]:
    """The rows no other row beats in both size and PSNR, by size: a writer's curve."""
    rows = sorted(rows, key=lambda r: (r["size"], -r["psnr"]))
    out = []
    for r in rows:
        if not out or r["psnr"] > out[-1]["psnr"]:
            out.append(r)
    return out


def crossing(rows: list[dict]) -> list[str]:
    """For each of splat-transform's points, on our curve: our PSNR at its size and our size at
    its PSNR, which is where our curve passes that point (beyond our curve's ends: what its end
    says)."""
    ours = front([r for r in rows if r["tool"] == "splatforge"])
    sizes, psnrs = [r["size"] for r in ours], [r["psnr"] for r in ours]
    lines = []
    for t in (r for r in rows if r["tool"] == "splat-transform"):
        if t["size"] > sizes[-1]:
            at_size = f">= {psnrs[-1]:.2f} dB ({psnrs[-1] - t['psnr']:+.2f}; our largest file is smaller)"
        elif t["size"] < sizes[0]:
            at_size = f"below our smallest file ({sizes[0]:,} B, {psnrs[0]:.2f} dB)"
        else:
            value = interpolate(t["size"], sizes, psnrs)
            at_size = f"{value:.2f} dB ({value - t['psnr']:+.2f})"
        if t["psnr"] < psnrs[0]:
            at_psnr = (f"<= {sizes[0]:,} B ({100 * (sizes[0] / t['size'] - 1):+.1f}%; our smallest file is "
                       f"{psnrs[0]:.2f} dB)")
        elif t["psnr"] > psnrs[-1]:
            at_psnr = f"above our largest file ({sizes[-1]:,} B, {psnrs[-1]:.2f} dB)"
        else:
            value = interpolate(t["psnr"], psnrs, sizes)
            at_psnr = f"{value:,.0f} B ({100 * (value / t['size'] - 1):+.1f}%)"
        lines.append(f"{t['scene']}: splat-transform {t['setting']}, {t['size']:,} B at {t['psnr']:.2f} dB. Ours: at "
                     f"that size {at_size}; at that PSNR {at_psnr}")
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
    """Per attribute, from the curves' files: our default, our file nearest theirs in size (both
    in Morton order) and their default (their first file with --their-fast)."""
    their_rows = [r for r in curve_rows if r["tool"] == "splat-transform"]
    theirs = next((r for r in their_rows if r["setting"].startswith("default")), their_rows[0])
    ours = [r for r in curve_rows if r["tool"] == "splatforge"]
    picks = {"ours default": next(r for r in ours if r["setting"].endswith("(default)")),
             "ours at their size": min(ours, key=lambda r: abs(r["size"] - theirs["size"]))}
    with zipfile.ZipFile(theirs["path"]) as zf:
        meta = json.loads(zf.read("meta.json"))
    morton = morton_order(arrays_of(g).means)
    matches = {label: (r, morton) for label, r in picks.items()}
    matches["theirs"] = (theirs, their_match(g, theirs["decoded"], meta))
    rows = []
    for attribute in (*ATTRIBUTES, "all"):
        if attribute == "shN" and not g.sh_degree:
            continue
        row = {"scene": name, "attribute": attribute}
        for label, (r, index) in matches.items():
            row[label] = r["psnr"] if attribute == "all" else judge.psnr(hybrid(g, r["decoded"], index, attribute))
            row[f"{label} setting"] = f"{r['setting']}, {r['size']:,} B"
        rows.append(row)
        print(f"  {name} {attribute}: " + ", ".join(f"{k} {row[k]:.2f} dB" for k in matches), file=sys.stderr,
              flush=True)
    return rows


def print_tables(curve_rows: list[dict], attr_rows: list[dict]) -> None:
    for scene in dict.fromkeys(r["scene"] for r in curve_rows):
        rows = [r for r in curve_rows if r["scene"] == scene]
        tools = ("splatforge", "splat-transform")
        curve = {id(r) for tool in tools for r in front([x for x in rows if x["tool"] == tool])}
        print(f"\n{scene}: both writers by size (*: on the writer's curve, no file of its own smaller and better)")
        print(f"{'writer':<17}{'setting':<34}{'bytes':>11}{'vs PLY':>9}{'vs orig dB':>11}{'drop dB':>9}{'wall s':>8}"
              f"{'CPU s':>7}")
        for r in sorted(rows, key=lambda r: r["size"]):
            mark = "*" if id(r) in curve else " "
            print(f"{r['tool']:<17}{r['setting']:<33}{mark}{r['size']:>11,}{r['ratio']:>8.2f}x{r['psnr']:>11.2f}"
                  f"{r['drop']:>9.3f}{r['wall']:>8.1f}{r['cpu']:>7.1f}")
        for line in crossing(rows):
            print(line)
    if attr_rows:
        labels = ("ours default", "ours at their size", "theirs")
        print("\nPSNR (dB) of the original with one attribute quantized (decoded by splat-transform)")
        for scene in dict.fromkeys(r["scene"] for r in attr_rows):
            rows = [r for r in attr_rows if r["scene"] == scene]
            print(f"{scene}: " + "; ".join(f"{label}: {rows[0][label + ' setting']}" for label in labels))
            print(f"{'attribute':<11}" + "".join(f"{label:>20}" for label in labels))
            for r in rows:
                print(f"{r['attribute']:<11}" + "".join(f"{r[label]:>20.2f}" for label in labels))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", nargs="+", choices=("garden", "demo"), default=("garden", "demo"))
    ap.add_argument("--their-settings", type=int, default=0,
                    help="only the first N of splat-transform's settings per scene (0: all)")
    ap.add_argument("--train-seconds", type=float, default=600.0,
                    help="time budget for training the demo scene, cached under out/bench (0: all of its 3,000 "
                         "steps, about 50 minutes on two cores)")
    ap.add_argument("--train-steps", type=int, default=None,
                    help="train the demo scene for this many steps instead (the recipe's schedule fitted to "
                         "them, no time limit; cached); 1,200 reach SH degree 3 at step 900")
    ap.add_argument("--their-fast", action="store_true",
                    help="degree-3 scenes: splat-transform's `-i 1` only (its default 10 SH k-means iterations "
                         "take 93 CPU s on 20k Gaussians and ran over 20 CPU minutes on the 43,769 of the "
                         "fully trained demo scene; `-i 1` lost 0.1 dB on the 20k scene)")
    ap.add_argument("--garden", type=Path, default=GARDEN)
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--no-attributes", action="store_true", help="skip the per-attribute table")
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "compress_rd",
                    help="folder for the files; a rerun reuses splat-transform's files there for the same PLY")
    args = ap.parse_args()

    default = SogConfig()
    if default.sort != "morton":
        raise SystemExit("the per-attribute table needs the default SOG layout to be Morton order")
    start, cpu = time.perf_counter(), time.process_time()
    curve_rows, attr_rows = [], []
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.scenes:
        if name == "garden":
            g, tests = load_point_capture(args.garden).to_gaussians(opacity=0.8), None
        else:
            capture_dir, trained = trained_demo_scene(args.train_seconds or None, train_steps=args.train_steps)
            g, tests = load_scene(trained), TestViews(capture_dir)
        name = f"{name}-d{g.sh_degree}"
        ply = args.out / f"{name}.ply"
        save_scene(g, ply)
        judge = Judge(g, args.views, args.width, args.height, tests)
        rows = curves(name, g, ply, judge, args.out, default, args.their_settings, args.their_fast)
        if not args.no_attributes:
            attr_rows += per_attribute(name, g, rows, judge)
        curve_rows += rows
    print_tables(curve_rows, attr_rows)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"\nthis run: {time.perf_counter() - start:.0f} s wall, {time.process_time() - cpu:.0f} CPU s here and "
          f"{children.ru_utime + children.ru_stime:.0f} CPU s in node (splat-transform)")


if __name__ == "__main__":
    main()
