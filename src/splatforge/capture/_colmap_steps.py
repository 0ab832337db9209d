"""Helpers shared by SfM (`sfm`) and triangulation with known poses (`triangulate`): pycolmap's log
kept quiet, and feature extraction and matching each as one pycolmap call under a tqdm bar.

pycolmap reports no progress to Python during extraction or matching, and its database cannot be
read while it writes (COLMAP aborts the process on SQLite's "database is locked"), so a stage's bar
shows its elapsed time and completes when the stage does. Splitting the work into several calls
would move the bar, but each call repeats a setup (threads, the matcher's cache of the database):
on the 67 Buddha photos, 25 chunks made matching 1.5x slower and even 2-3 chunks were measurably
slower than pycolmap's own exhaustive matcher.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Callable, Iterator, TypeVar

_T = TypeVar("_T")


@contextlib.contextmanager
def quiet_colmap(verbose: bool = False) -> Iterator[None]:
    """COLMAP logs every step at INFO level to stderr; keep its errors only (unless `verbose`)."""
    import pycolmap

    saved = pycolmap.logging.minloglevel
    if not verbose:
        pycolmap.logging.minloglevel = 2  # glog: 0 INFO, 1 WARNING, 2 ERROR; its warnings are about GPUs we do not use
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = saved


def run_stage(label: str, total: int, unit: str, progress: bool, work: Callable[[], _T]) -> tuple[_T, float]:
    """Run `work()` under a tqdm bar of `total` `unit`s that completes when it returns; (result, seconds)."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    with tqdm(total=total, desc=label, unit=unit, disable=not progress, dynamic_ncols=True) as bar:
        result = work()
        bar.update(total)
    return result, time.perf_counter() - start


def extract_features(database: Path, image_dir: Path, names: list[str], camera_model: str,
                     single_camera: bool, camera_params: str = "", max_image_size: int = 3200,
                     max_num_features: int = 8192, progress: bool = True) -> float:
    """SIFT features of `names` (under `image_dir`) into `database` on the CPU, one camera for all
    images or one per image (`camera_params`, when given, sets that camera and marks its focal length
    as a prior); returns the seconds it took."""
    import pycolmap

    reader = pycolmap.ImageReaderOptions(camera_model=camera_model, camera_params=camera_params)
    extraction = pycolmap.FeatureExtractionOptions(num_threads=-1, max_image_size=max_image_size)
    extraction.sift.max_num_features = max_num_features
    mode = pycolmap.CameraMode.SINGLE if single_camera else pycolmap.CameraMode.PER_IMAGE
    _, seconds = run_stage("features", len(names), "image", progress, lambda: pycolmap.extract_features(
        database, image_dir, image_names=names, camera_mode=mode, reader_options=reader,
        extraction_options=extraction, device=pycolmap.Device.cpu))
    return seconds


def match_exhaustive(database: Path, num_pairs: int, progress: bool = True) -> float:
    import pycolmap

    _, seconds = run_stage("matching", num_pairs, "pair", progress,
                           lambda: pycolmap.match_exhaustive(database, device=pycolmap.Device.cpu))
    return seconds


def match_sequential(database: Path, num_pairs: int, overlap: int, progress: bool = True) -> float:
    import pycolmap

    pairing = pycolmap.SequentialPairingOptions(overlap=overlap, quadratic_overlap=True)
    _, seconds = run_stage("matching", num_pairs, "pair", progress, lambda: pycolmap.match_sequential(
        database, pairing_options=pairing, device=pycolmap.Device.cpu))
    return seconds


def match_pairs(database: Path, pairs: list[tuple[str, str]], work_dir: Path, progress: bool = True) -> float:
    """Match SIFT features of the given image pairs and verify them geometrically (two-view geometry
    by RANSAC); returns the seconds it took."""
    import pycolmap

    pairs_file = work_dir / "pairs.txt"
    pairs_file.write_text("".join(f"{a} {b}\n" for a, b in pairs))
    _, seconds = run_stage("matching", len(pairs), "pair", progress, lambda: pycolmap.match_image_pairs(
        database, pairing_options=pycolmap.ImportedPairingOptions(match_list_path=str(pairs_file)),
        device=pycolmap.Device.cpu))
    pairs_file.unlink()
    return seconds


def exhaustive_pair_count(count: int) -> int:
    return count * (count - 1) // 2


def sequential_pair_count(count: int, overlap: int) -> int:
    """Pairs COLMAP's sequential matcher compares: each image with its next `overlap` images and, with
    quadratic overlap, with the images 2^k ahead for k < `overlap` (which links a video's end to its
    start when the camera comes back round)."""
    pairs = set()
    for i in range(count):
        for j in range(1, overlap + 1):
            if i + j < count:
                pairs.add((i, i + j))
        for k in range(overlap):
            if i + 2**k < count:
                pairs.add((i, i + 2**k))
    return len(pairs)
