"""Helpers shared by SfM (`sfm`) and triangulation with known poses (`triangulate`): pycolmap's log
kept quiet, and feature extraction and matching run in chunks under a tqdm bar.

pycolmap reports no progress to Python during extraction or matching, and its database cannot be
read while it writes (COLMAP aborts the process on SQLite's "database is locked"), so the work is
handed to pycolmap a chunk of images or pairs at a time and the bar moves between chunks.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Iterator, Sequence

# Each pycolmap call costs a setup (threads, SIFT state, the matcher's cache of the whole database):
# about a second per matching call on 2 busy cores, which made 25 chunks of the 2,211 Buddha pairs
# 1.5x slower than one call. Chunks of 1,500+ pairs keep that to a few percent; the bar moves less often.
_EXTRACT_CHUNKS = 8
_MIN_EXTRACT_CHUNK = 16
_MATCH_CHUNKS = 6
_MIN_MATCH_CHUNK = 1500


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


def _bar(label: str, total: int, unit: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=label, unit=unit, disable=not progress, dynamic_ncols=True)


def _chunks(items: Sequence, parts: int, smallest: int) -> Iterator[Sequence]:
    size = max(smallest, math.ceil(len(items) / parts))
    for start in range(0, len(items), size):
        yield items[start:start + size]


def extract_features(database: Path, image_dir: Path, names: list[str], camera_model: str,
                     single_camera: bool, camera_params: str = "", max_image_size: int = 3200,
                     max_num_features: int = 8192, progress: bool = True) -> float:
    """SIFT features of `names` (under `image_dir`) into `database` on the CPU, one camera for all
    images or one per image; returns the seconds it took."""
    import pycolmap

    start = time.perf_counter()
    reader = pycolmap.ImageReaderOptions(camera_model=camera_model, camera_params=camera_params)
    extraction = pycolmap.FeatureExtractionOptions(num_threads=-1, max_image_size=max_image_size)
    extraction.sift.max_num_features = max_num_features
    mode = pycolmap.CameraMode.SINGLE if single_camera else pycolmap.CameraMode.PER_IMAGE
    with _bar("features", len(names), "image", progress) as bar:
        for chunk in _chunks(names, _EXTRACT_CHUNKS, _MIN_EXTRACT_CHUNK):
            pycolmap.extract_features(database, image_dir, image_names=list(chunk), camera_mode=mode,
                                      reader_options=reader, extraction_options=extraction,
                                      device=pycolmap.Device.cpu)
            if single_camera and reader.existing_camera_id < 0:
                # Later chunks join the first chunk's camera instead of making one each.
                with contextlib.closing(pycolmap.Database.open(database)) as db:
                    reader.existing_camera_id = db.read_all_cameras()[0].camera_id
            bar.update(len(chunk))
    return time.perf_counter() - start


def match_pairs(database: Path, pairs: list[tuple[str, str]], work_dir: Path, progress: bool = True) -> float:
    """Match SIFT features of the given image pairs and verify them geometrically (two-view geometry
    by RANSAC); returns the seconds it took."""
    import pycolmap

    start = time.perf_counter()
    pairs_file = work_dir / "pairs.txt"
    with _bar("matching", len(pairs), "pair", progress) as bar:
        for chunk in _chunks(pairs, _MATCH_CHUNKS, _MIN_MATCH_CHUNK):
            pairs_file.write_text("".join(f"{a} {b}\n" for a, b in chunk))
            pycolmap.match_image_pairs(
                database, pairing_options=pycolmap.ImportedPairingOptions(match_list_path=str(pairs_file)),
                device=pycolmap.Device.cpu)
            bar.update(len(chunk))
    pairs_file.unlink()
    return time.perf_counter() - start


def exhaustive_pairs(names: list[str]) -> list[tuple[str, str]]:
    return [(names[i], names[j]) for i in range(len(names)) for j in range(i + 1, len(names))]


def sequential_pairs(names: list[str], overlap: int) -> list[tuple[str, str]]:
    """Each image with the next `overlap` ones, and with images 2^k ahead beyond that (COLMAP's
    quadratic overlap), which links a video's start to its end when the camera comes back round."""
    pairs = set()
    for i in range(len(names)):
        for step in range(1, overlap + 1):
            if i + step < len(names):
                pairs.add((i, i + step))
        step = 2 * overlap
        while i + step < len(names):
            pairs.add((i, i + step))
            step *= 2
    return [(names[i], names[j]) for i, j in sorted(pairs)]
