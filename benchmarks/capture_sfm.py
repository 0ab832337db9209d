"""Structure from motion on real photos: `run_sfm` against pycolmap's own default pipeline, same photos,
same process.

    python benchmarks/capture_sfm.py [--scene fox|buddha] [--photos N] [--size 512]

Photos (--scene), the first --photos of them: the fox in tests/data/fox (50 phone-video frames, 288x512,
NVIDIA Source Code License-NC) or the Buddha in tests/data/buddha (67 handheld photos, 512x288,
CC BY 4.0). Rows:
- splatforge: `run_sfm` with its defaults at --size (exhaustive matching up to 100 photos, mapper
  "auto": global, then incremental when global leaves photos out).
- mapping only, on the splatforge run's database: incremental and global (GLOMAP) alone, to show
  what "auto" chooses between.
- pycolmap default (the reference): extract_features, match_exhaustive, incremental_mapping with
  their default options (CPU), as pycolmap's README runs them.
The ratio is the reference's total seconds over splatforge's (above 1: splatforge is faster).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pycolmap
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from splatforge.capture._colmap_steps import quiet_colmap  # noqa: E402
from splatforge.capture.sfm import SfmConfig, run_sfm  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def _row(name, registered, total, points, error, seconds):
    return {"run": name, "registered": f"{registered}/{total}", "points": points, "error": error, **seconds}


def _best(models: dict):
    return max(models.values(), key=lambda m: m.num_reg_images(), default=None)


def reference(photos: Path, work: Path, total: int) -> dict:
    database = work / "reference.db"
    seconds = {}
    start = time.perf_counter()
    pycolmap.extract_features(database, photos, device=pycolmap.Device.cpu)
    seconds["features"] = time.perf_counter() - start
    start = time.perf_counter()
    pycolmap.match_exhaustive(database, device=pycolmap.Device.cpu)
    seconds["matching"] = time.perf_counter() - start
    start = time.perf_counter()
    (work / "reference").mkdir()
    model = _best(pycolmap.incremental_mapping(database, photos, work / "reference"))
    seconds["mapping"] = time.perf_counter() - start
    seconds["total"] = sum(seconds.values())
    return _row("pycolmap default (reference)", model.num_reg_images() if model else 0, total,
                model.num_points3D() if model else 0, model.compute_mean_reprojection_error() if model else 0.0,
                seconds)


def mapping_only(database: Path, photos: Path, work: Path, total: int) -> list[dict]:
    rows = []
    for mapper in ("incremental", "global"):
        out = work / f"only_{mapper}"
        out.mkdir()
        start = time.perf_counter()
        if mapper == "incremental":
            models = pycolmap.incremental_mapping(database, photos, out,
                                                  pycolmap.IncrementalPipelineOptions(min_model_size=3))
        else:
            models = pycolmap.global_mapping(database, photos, out, pycolmap.GlobalPipelineOptions(min_model_size=3))
        seconds = time.perf_counter() - start
        model = _best(models)
        rows.append(_row(f"  mapping only: {mapper}", model.num_reg_images() if model else 0, total,
                         model.num_points3D() if model else 0,
                         model.compute_mean_reprojection_error() if model else 0.0, {"mapping": seconds}))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scene", default="fox", choices=["fox", "buddha"])
    parser.add_argument("--photos", type=int, default=None, help="the first N photos (default: all)")
    parser.add_argument("--size", type=int, default=512, help="max_image_size of the splatforge run")
    args = parser.parse_args()
    source = DATA / args.scene / "images"
    names = sorted(p.name for p in source.glob("*.jpg"))[: args.photos]
    with tempfile.TemporaryDirectory(prefix="bench-sfm-") as tmp:
        work = Path(tmp)
        photos = work / "photos"
        photos.mkdir()
        for name in names:
            shutil.copy(source / name, photos / name)
        report = run_sfm(photos, work / "capture", SfmConfig(max_image_size=args.size, keep_database=True,
                                                             progress=False))
        ours = _row(f"splatforge run_sfm ({report.matcher}, {report.mapper})", len(report.registered),
                    len(names), report.num_points, report.mean_reprojection_error, report.seconds)
        with quiet_colmap():
            rows = [ours] + mapping_only(work / "capture" / "database.db", work / "capture" / "images", work,
                                         len(names)) + [reference(photos, work, len(names))]
    size = "x".join(map(str, Image.open(source / names[0]).size))
    print(f"SfM on {len(names)} {args.scene} photos ({size}), 2 cores; seconds per stage\n")
    columns = ["photos", "features", "matching", "mapping", "total"]
    print(f"| {'run':<46} | registered | points | reproj px | " + " | ".join(f"{c:>8}" for c in columns) + " |")
    print("|" + "-" * 48 + "|------------|--------|-----------|" + "|".join("-" * 10 for _ in columns) + "|")
    for row in rows:
        cells = " | ".join(f"{row[c]:8.1f}" if c in row else f"{'':>8}" for c in columns)
        print(f"| {row['run']:<46} | {row['registered']:>10} | {row['points']:>6} | {row['error']:9.3f} | {cells} |")
    print(f"\nratio reference / splatforge total: {rows[-1]['total'] / ours['total']:.2f}")
    if report.unregistered:
        print(f"splatforge left out: {', '.join(report.unregistered)}")


if __name__ == "__main__":
    main()
