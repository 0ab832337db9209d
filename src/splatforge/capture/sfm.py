"""Structure from motion on the CPU with pycolmap: a folder of photos or a video in, a standard COLMAP
capture out (`OUTPUT/images/`, `OUTPUT/sparse/0/*.bin`) that splatforge, gsplat, nerfstudio and
COLMAP itself read, plus `OUTPUT/sfm_report.json`.

Stages, each under its own progress bar: photos (decode, EXIF rotation, resize) or frames (video),
SIFT features, matching with geometric verification, mapping. The capture is built in a hidden
folder beside OUTPUT and renamed to OUTPUT only when everything succeeded: a failure leaves nothing.

Choices, measured on the real captures in tests/data (the 50-frame fox, the 67-photo Buddha) at 512 px
(benchmarks/capture_sfm.py):
- Matching: every pair up to `exhaustive_limit` photos (it finds loops and revisits that a sequence
  misses; 2,211 pairs for 67 photos); beyond that, and for video frames, each image with its
  `sequential_overlap` successors plus quadratically spaced ones (linear cost).
- Mapping "auto": COLMAP's incremental mapper; the global one (GLOMAP, in pycolmap) only as a second
  try when the incremental model poses fewer than `min_registered` of the photos (the model with more
  photos wins). Not global first: on both captures pycolmap's global mapper posed every photo with a
  low reprojection error (0.45 px fox, 0.35 px Buddha) and yet the wrong cameras: against the
  datasets' own cameras its relative rotations were off by 11.8 deg on average (max 47) on the fox and
  1.0 deg (max 28) on the Buddha, camera centres by 77% and 82% of the cameras' spread; the
  incremental mapper's were off by 0.11 deg (0.0032) and 0.25 deg (0.0042). Trained for 300 s, the
  fox's held-out views scored 17.9 dB from the global poses, 30.8 dB from the incremental ones. Mapping takes seconds; features and
  matching take the rest.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Optional

from ..errors import SplatforgeError
from ._colmap_steps import (
    exhaustive_pair_count,
    extract_features,
    match_exhaustive,
    match_sequential,
    quiet_colmap,
    sequential_pair_count,
)
from ._sfm_inputs import PHOTO_SUFFIXES, PreparedPhoto, camera_params, find_photos, prepare_photo
from .video import VIDEO_SUFFIXES, extract_frames

REPORT_NAME = "sfm_report.json"
CameraModel = Literal["SIMPLE_RADIAL", "SIMPLE_PINHOLE", "PINHOLE", "RADIAL", "OPENCV"]


@dataclass
class SfmConfig:
    """Structure from motion settings (`splatforge capture`)."""

    max_image_size: int = 1024  # long side in pixels that photos and frames are processed and saved at (never enlarged)
    num_frames: int = 150  # video: frames kept, the sharpest of each of this many equal windows
    matcher: Literal["auto", "exhaustive", "sequential"] = "auto"  # auto: exhaustive up to exhaustive_limit photos, sequential beyond and for video
    exhaustive_limit: int = 100  # matcher auto: the most photos matched pair by pair
    sequential_overlap: int = 10  # sequential matching: each image with this many successors (and those 2^k ahead, k < this)
    mapper: Literal["auto", "incremental", "global"] = "auto"  # auto: incremental, then global when that poses too few photos
    camera_model: CameraModel = "SIMPLE_RADIAL"  # COLMAP camera model of the solved cameras
    single_camera: bool = True  # one camera (intrinsics) shared by all photos of the folder: same phone, same zoom
    max_num_features: int = 8192  # SIFT features per image at most
    min_registered: float = 0.5  # fail when fewer than this fraction of the images get a pose
    overwrite: bool = False  # replace OUTPUT when it exists
    keep_database: bool = False  # keep COLMAP's database.db (features, matches) in OUTPUT
    verbose: bool = False  # show COLMAP's own log
    progress: bool = True  # progress bars

    def __post_init__(self) -> None:
        choices = {"matcher": ("auto", "exhaustive", "sequential"), "mapper": ("auto", "incremental", "global"),
                   "camera_model": ("SIMPLE_RADIAL", "SIMPLE_PINHOLE", "PINHOLE", "RADIAL", "OPENCV")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise SplatforgeError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        for name in ("max_image_size", "num_frames", "exhaustive_limit", "sequential_overlap", "max_num_features"):
            if getattr(self, name) < 1:
                raise SplatforgeError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 < self.min_registered <= 1.0:
            raise SplatforgeError(f"min_registered must be in (0, 1], got {self.min_registered}")


@dataclass
class SfmReport:
    """What SfM made: how many images got a pose (and which did not), points, error and stage times."""

    input: str
    output: str
    num_images: int
    registered: list[str]
    unregistered: list[str]
    num_points: int
    mean_reprojection_error: float  # pixels
    mean_track_length: float  # images per point
    image_size: list[int]  # [width, height] of the first image as processed
    matcher: str
    num_pairs: int
    mapper: str  # the mapper whose model was kept
    camera_model: str
    focal_prior: Optional[float]  # pixels, from EXIF; None when no photo had one
    seconds: dict[str, float] = field(default_factory=dict)  # per stage, and "total"
    mappers_tried: dict[str, int] = field(default_factory=dict)  # mapper -> images it registered

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        lines = [f"{len(self.registered)} of {self.num_images} images registered, {self.num_points:,} points, "
                 f"mean reprojection error {self.mean_reprojection_error:.3f} px, "
                 f"mean track length {self.mean_track_length:.1f}",
                 f"  {self.matcher} matching ({self.num_pairs:,} pairs), {self.mapper} mapping, "
                 f"{self.camera_model} camera at {self.image_size[0]}x{self.image_size[1]}"
                 + (f", EXIF focal prior {self.focal_prior:.1f} px" if self.focal_prior else "")]
        if self.unregistered:
            lines.append(f"  not registered: {_name_list(self.unregistered)}")
        lines.append("  time: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items()))
        lines.append(f"  capture: {self.output} (images/, sparse/0/)")
        return "\n".join(lines)


def _name_list(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


def run_sfm(input: str | os.PathLike, output: str | os.PathLike, config: Optional[SfmConfig] = None) -> SfmReport:
    """Make a posed COLMAP capture from a folder of photos or a video with pycolmap on the CPU.

    Args:
        input: a folder of photos (JPEG, PNG, TIFF, WebP, BMP; HEIC with pillow-heif), or of an
            images/ folder of them, or a video file (.mp4, .mov, ...).
        output: the capture folder to create: images/ (the photos as used: upright, long side at most
            `config.max_image_size`), sparse/0/ (binary COLMAP model of the largest reconstruction)
            and sfm_report.json.
        config: `SfmConfig`; defaults when None.

    Returns:
        The `SfmReport`, also written to OUTPUT/sfm_report.json.

    Raises:
        SplatforgeError: missing or empty input, fewer than 3 photos, an unreadable or truncated photo
            (named), a video with no decodable frame, OUTPUT existing (without `overwrite`), or fewer
            than `min_registered` of the images registered (named, with what to try). Nothing is
            left at OUTPUT then.
    """
    config = config or SfmConfig()
    source, output = Path(input), Path(output)
    if not source.exists():
        raise SplatforgeError(f"{source} does not exist; give a folder of photos or a video file")
    if output.exists() and not config.overwrite and (output.is_file() or any(output.iterdir())):
        raise SplatforgeError(f"{output} already exists; choose another output folder or pass --overwrite")
    if output.resolve() == source.resolve():
        raise SplatforgeError("the output folder must differ from the input folder")
    output.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    try:
        with quiet_colmap(config.verbose):
            report = _run(source, output, work, config)
        (work / REPORT_NAME).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        if output.exists():
            shutil.rmtree(output) if output.is_dir() else output.unlink()
        work.rename(output)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return report


def _run(source: Path, output: Path, work: Path, config: SfmConfig) -> SfmReport:
    seconds: dict[str, float] = {}
    images_dir = work / "images"
    images_dir.mkdir()
    start = time.perf_counter()
    video = is_video(source)
    if video:
        names = extract_frames(source, images_dir, config.num_frames, config.max_image_size, config.progress)
        prepared = None
        seconds["frames"] = time.perf_counter() - start
    elif source.is_dir():
        prepared = _prepare_photos(source, images_dir, config)
        names = [p.name for p in prepared]
        seconds["photos"] = time.perf_counter() - start
    else:
        raise SplatforgeError(f"{source} is neither a folder of photos nor a video "
                              f"({', '.join(VIDEO_SUFFIXES)})")
    if len(names) < 3:
        raise SplatforgeError(f"{source}: SfM needs at least 3 overlapping images, got {len(names)}"
                              + (" (a video this short gives too few frames)" if video else ""))

    single_camera, params, focal = config.single_camera, "", None
    if prepared is not None:
        sizes = {p.size for p in prepared}
        if single_camera and len(sizes) > 1:
            single_camera = False  # photos of different sizes cannot share one camera's intrinsics
        focals = sorted(p.focal_px for p in prepared if p.focal_px)
        if single_camera and focals:
            focal = focals[len(focals) // 2]
            width, height = prepared[0].size
            params = camera_params(config.camera_model, width, height, focal)
    database = work / "database.db"
    seconds["features"] = extract_features(database, images_dir, names, config.camera_model, single_camera,
                                           params, config.max_image_size, config.max_num_features,
                                           config.progress)
    matcher = config.matcher
    if matcher == "auto":
        matcher = "sequential" if video or len(names) > config.exhaustive_limit else "exhaustive"
    if matcher == "exhaustive":
        num_pairs = exhaustive_pair_count(len(names))
        seconds["matching"] = match_exhaustive(database, num_pairs, config.progress)
    else:
        num_pairs = sequential_pair_count(len(names), config.sequential_overlap)
        seconds["matching"] = match_sequential(database, num_pairs, config.sequential_overlap, config.progress)

    start = time.perf_counter()
    model, mapper, tried = _map(database, images_dir, work, len(names), config)
    seconds["mapping"] = time.perf_counter() - start

    registered = sorted(model.images[i].name for i in model.reg_image_ids()) if model is not None else []
    unregistered = sorted(set(names) - set(registered))
    needed = max(3, math.ceil(config.min_registered * len(names)))
    if len(registered) < needed:
        raise SplatforgeError(_registration_advice(source, names, registered, unregistered, needed, matcher,
                                                   config, video))
    sparse = work / "sparse" / "0"
    sparse.mkdir(parents=True)
    model.write_binary(str(sparse))
    for scratch in ("mapping_incremental", "mapping_global"):
        shutil.rmtree(work / scratch, ignore_errors=True)
    if not config.keep_database:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
    seconds["total"] = sum(seconds.values())
    first = model.cameras[next(iter(model.cameras))]
    return SfmReport(
        input=str(source), output=str(output), num_images=len(names), registered=registered,
        unregistered=unregistered, num_points=int(model.num_points3D()),
        mean_reprojection_error=float(model.compute_mean_reprojection_error()),
        mean_track_length=float(model.compute_mean_track_length()) if model.num_points3D() else 0.0,
        image_size=[int(first.width), int(first.height)], matcher=matcher, num_pairs=num_pairs, mapper=mapper,
        camera_model=config.camera_model, focal_prior=focal, seconds={k: round(v, 3) for k, v in seconds.items()},
        mappers_tried=tried)


def _prepare_photos(folder: Path, images_dir: Path, config: SfmConfig) -> list[PreparedPhoto]:
    from tqdm.auto import tqdm

    photos = find_photos(folder)
    if not photos:
        raise SplatforgeError(f"{folder} holds no photos (looked for {', '.join(PHOTO_SUFFIXES)} files in it "
                              "and in its images/ folder); give a folder of overlapping photos or a video")
    if len(photos) < 3:
        raise SplatforgeError(f"{folder}: SfM needs at least 3 overlapping photos, found {len(photos)} "
                              f"({', '.join(p.name for p in photos)}); take more photos around the subject")
    prepared = []
    for photo in tqdm(photos, desc="photos", unit="photo", disable=not config.progress, dynamic_ncols=True):
        prepared.append(prepare_photo(photo, images_dir, config.max_image_size))
    seen: dict[str, Path] = {}
    for p in prepared:
        if p.name in seen:
            raise SplatforgeError(f"{p.source} and {seen[p.name]} would both be saved as {p.name}; rename one")
        seen[p.name] = p.source
    return prepared


def _map(database: Path, images_dir: Path, work: Path, count: int, config: SfmConfig):
    """(best reconstruction or None, its mapper, {mapper: images registered}) after the mappers the
    config asks for."""
    from tqdm.auto import tqdm

    import pycolmap

    tried: dict[str, int] = {}
    best, best_mapper = None, config.mapper
    order = ["incremental", "global"] if config.mapper == "auto" else [config.mapper]
    for mapper in order:
        folder = work / f"mapping_{mapper}"
        folder.mkdir()
        bar = tqdm(total=count, desc=f"mapping ({mapper})", unit="image", disable=not config.progress,
                   dynamic_ncols=True)
        with bar:
            if mapper == "incremental":
                options = pycolmap.IncrementalPipelineOptions(min_model_size=3, num_threads=-1)
                models = pycolmap.incremental_mapping(database, images_dir, folder, options,
                                                      next_image_callback=lambda: bar.update(1))
            else:
                options = pycolmap.GlobalPipelineOptions(min_model_size=3, num_threads=-1)
                models = pycolmap.global_mapping(database, images_dir, folder, options)
            model = max(models.values(), key=lambda m: m.num_reg_images(), default=None)
            bar.n = model.num_reg_images() if model is not None else 0
            bar.refresh()
        tried[mapper] = model.num_reg_images() if model is not None else 0
        if model is not None and (best is None or _better(model, best)):
            best, best_mapper = model, mapper
        if best is not None and best.num_reg_images() >= config.min_registered * count:
            break
    return best, best_mapper, tried


def _better(a, b) -> bool:
    if a.num_reg_images() != b.num_reg_images():
        return a.num_reg_images() > b.num_reg_images()
    return a.compute_mean_reprojection_error() < b.compute_mean_reprojection_error()


def _registration_advice(source: Path, names: list[str], registered: list[str], unregistered: list[str],
                         needed: int, matcher: str, config: SfmConfig, video: bool) -> str:
    tips = ["photos that overlap more (each part of the subject in 3+ photos, small steps between shots)",
            "sharp, evenly lit photos of a textured, static subject"]
    if config.max_image_size < 1600:
        tips.append(f"a larger --max-image-size (now {config.max_image_size})")
    if matcher == "sequential" and not video:
        tips.append("--matcher exhaustive (sequential matching assumes the photos are in shooting order)")
    if config.mapper != "auto":
        tips.append("--mapper auto (tries incremental, then global mapping)")
    if video:
        tips.append(f"more frames (--num-frames, now {config.num_frames}) or a slower camera move")
    return (f"{source}: only {len(registered)} of {len(names)} images could be posed (need {needed}); "
            f"not registered: {_name_list(unregistered)}. Try: " + "; ".join(tips) + ".")


def needs_sfm(path: str | os.PathLike) -> bool:
    """True for a video file, or a folder of photos with no camera poses (no COLMAP model, no
    transforms.json): what `ensure_posed_capture` runs SfM on."""
    path = Path(path)
    if path.is_file():
        return is_video(path)
    if not path.is_dir():
        return False
    for model_dir in (path / "sparse" / "0", path / "sparse", path):
        if any((model_dir / f"cameras.{ext}").is_file() for ext in ("bin", "txt")):
            return False
    if any((path / name).is_file() for name in ("transforms.json", "transforms_train.json")):
        return False
    return bool(find_photos(path))


def ensure_posed_capture(path: str | os.PathLike, work_dir: str | os.PathLike,
                         config: Optional[SfmConfig] = None) -> Path:
    """The capture to train on: `path` itself when it has poses; for a folder of photos or a video,
    the COLMAP capture SfM makes of it in `work_dir/capture` (made once: a later call with the same
    input reuses it). `splatforge train PHOTOS -o OUT` trains on OUT/capture this way.

    Raises:
        SplatforgeError: as `run_sfm`.
    """
    path, capture = Path(path), Path(work_dir) / "capture"
    if not needs_sfm(path):
        return path
    report_file = capture / REPORT_NAME
    if report_file.is_file():
        try:
            if Path(json.loads(report_file.read_text())["input"]).resolve() == path.resolve():
                return capture
        except (OSError, ValueError, KeyError, TypeError):
            pass  # an unreadable report: make the capture again
    config = config or SfmConfig()
    config = SfmConfig(**{**asdict(config), "overwrite": True})
    made = [folder for folder in (Path(work_dir), capture) if not folder.exists()]
    try:
        report = run_sfm(path, capture, config)
    except BaseException:
        for folder in reversed(made):  # a failed run leaves no output folder behind
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    print(report.format())
    return capture
