"""Starting points for a capture that has none (Blender scenes, a transforms.json without a PLY).

- "triangulate": match features between the training photos and triangulate them with the poses held
  fixed (`capture.triangulate.triangulate_known_poses`, pycolmap); colours from the photos.
- "random": uniform points in the cameras' common view volume (inside every training camera's frustum,
  between NEAR and FAR in the normalized frame where the cameras lie within unit radius of their
  centre); where no volume is common to all, the volume most cameras share. Each point takes the
  colour of the pixel it was sampled through.
- "auto": the capture's SfM points when it has them, else triangulated points when there are at least
  AUTO_MIN_TRIANGULATED of them, else random. Measured (benchmarks/capture.py init: the demo scene as a
  Blender scene, 24 views of 256x256, 400 steps, test PSNR): the COLMAP capture's 4,000 SfM points 25.65 dB,
  random 17.92 dB, the 91 points triangulation found on that smoothly shaded scene 17.08 dB. A few
  points lose to random; points on the surfaces, as many as SfM gives, win by far.

Only training views are used: test photos must not shape the scene.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import SplatforgeError
from .options import INIT_CHOICES, CaptureOptions
from .types import Capture, View

NEAR, FAR = 0.05, 3.0
AUTO_MIN_TRIANGULATED = 1000  # "auto" starts from random points when triangulation finds fewer


def _in_frustum(view: View, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which points lie in a view's frustum between NEAR and FAR, and their pixel coordinates."""
    cam = points @ view.viewmat[:3, :3].T + view.viewmat[:3, 3]
    z = cam[:, 2]
    safe = np.where(z > 1e-9, z, 1.0)
    u = view.K[0, 0] * cam[:, 0] / safe + view.K[0, 2]
    v = view.K[1, 1] * cam[:, 1] / safe + view.K[1, 2]
    h, w = view.image.shape[:2]
    return (z > NEAR) & (z < FAR) & (u >= 0) & (u < w) & (v >= 0) & (v < h), u, v


def _view_counts(views: list[View], points: np.ndarray) -> np.ndarray:  # [N] how many frusta hold each point
    return np.sum([_in_frustum(view, points)[0] for view in views], axis=0)


def _through_frusta(views: list[View], n: int, rng: np.random.Generator) -> np.ndarray:  # [n, 3]
    """Points uniform in the frustum (NEAR..FAR) of a random view each."""
    cam_index = rng.integers(0, len(views), n)
    pts = np.empty((n, 3))
    for c in np.unique(cam_index):
        sel = np.nonzero(cam_index == c)[0]
        view = views[c]
        h, w = view.image.shape[:2]
        px, py = rng.uniform(0, w, len(sel)), rng.uniform(0, h, len(sel))
        depth = np.cbrt(NEAR**3 + rng.uniform(0, 1, len(sel)) * (FAR**3 - NEAR**3))  # density ~ d^2: uniform
        ray = np.stack([(px - view.K[0, 2]) / view.K[0, 0], (py - view.K[1, 2]) / view.K[1, 1],
                        np.ones(len(sel))], axis=1) * depth[:, None]
        pts[sel] = (ray - view.viewmat[:3, 3]) @ view.viewmat[:3, :3]  # camera -> world: R^T (x - t)
    return pts


def random_points_in_view_volume(views: list[View], count: int = CaptureOptions.num_random_points, seed: int = 0,
                                 max_candidates: int = 5_000_000) -> tuple[np.ndarray, np.ndarray]:
    """`count` points (normalized frame) uniform in the volume the cameras see in common (module doc),
    coloured by the pixel one of those cameras sees them at: ([count, 3] float64, [count, 3] uint8).

    A pilot sample through the frusta finds the region the most cameras share (convex when it is
    every camera's); points are then drawn uniformly in its bounding box and kept if inside it."""
    if not views:
        raise SplatforgeError("no training views to place random points in")
    if count < 1:
        raise SplatforgeError(f"the number of random points must be >= 1, got {count}")
    rng = np.random.default_rng(seed)
    pilot = _through_frusta(views, 200_000, rng)
    counts = _view_counts(views, pilot)
    for need in _required_views(len(views)):
        region = pilot[counts >= need]
        if len(region) >= 100:
            break
    else:
        raise SplatforgeError("the training cameras share no view volume to place random points in")
    lo, hi = region.min(0), region.max(0)
    lo, hi = lo - 0.02 * (hi - lo), hi + 0.02 * (hi - lo)
    kept, drawn = [], 0
    while sum(len(k) for k in kept) < count and drawn < max_candidates:
        n = min(max(4 * count, 10_000), max_candidates - drawn)
        drawn += n
        pts = rng.uniform(lo, hi, size=(n, 3))
        kept.append(pts[_view_counts(views, pts) >= need])
    points = np.concatenate(kept)[:count]
    colors = np.full((len(points), 3), 0.5, np.float32)
    todo = np.ones(len(points), dtype=bool)
    for view in views:
        inside, u, v = _in_frustum(view, points)
        take = inside & todo
        h, w = view.image.shape[:2]
        colors[take] = view.image[np.minimum(v[take].astype(int), h - 1), np.minimum(u[take].astype(int), w - 1)]
        todo &= ~take
    return points, (np.clip(colors, 0, 1) * 255 + 0.5).astype(np.uint8)


def _required_views(cameras: int) -> list[int]:
    """Every camera first, then fewer: three quarters, half, a quarter, two, one."""
    steps = [cameras, math.ceil(0.75 * cameras), math.ceil(0.5 * cameras), math.ceil(0.25 * cameras), 2, 1]
    return sorted({s for s in steps if 1 <= s <= cameras}, reverse=True)


def _capture_frame_viewmats(capture: Capture, views: list[View]) -> np.ndarray:
    scale = float(np.cbrt(np.linalg.det(capture.normalization[:3, :3])))
    unscale = np.diag([1.0 / scale, 1.0 / scale, 1.0 / scale, 1.0])
    return np.stack([unscale @ v.viewmat @ capture.normalization for v in views])


def _cache_key(capture: Capture) -> str:
    digest = hashlib.sha256()
    for view in capture.train:
        digest.update(view.name.encode())
        digest.update(np.ascontiguousarray(view.K, np.float64).tobytes())
        digest.update(np.ascontiguousarray(view.viewmat, np.float64).round(9).tobytes())
        digest.update(np.ascontiguousarray(view.image[::17, ::17]).tobytes())
    return digest.hexdigest()[:20]


def triangulated_points(capture: Capture, cache_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Triangulated points of the training photos (normalized frame) and their colours, read from
    `cache_dir/init_points.npz` when it was made from the same views."""
    cache = Path(cache_dir) / "init_points.npz" if cache_dir is not None else None
    key = _cache_key(capture)
    if cache is not None and cache.is_file():
        try:
            with np.load(cache) as stored:
                if str(stored["key"]) == key:
                    return stored["points"], stored["colors"]
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is made again
    try:
        from .triangulate import triangulate_known_poses
    except ImportError as err:
        raise SplatforgeError(f"triangulation is not available here ({err})") from None
    views = capture.train
    viewmats = _capture_frame_viewmats(capture, views)
    points, colors = triangulate_known_poses([v.image for v in views], np.stack([v.K for v in views]), viewmats)
    norm = capture.normalization
    points = np.asarray(points, np.float64) @ norm[:3, :3].T + norm[:3, 3]
    colors = np.asarray(colors, np.uint8)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(cache.name + ".partial.npz")
        np.savez(partial, key=key, points=points, colors=colors)
        partial.replace(cache)
    return points, colors


def with_initial_points(capture: Capture, init: str = "auto", cache_dir: Path | None = None,
                        num_random_points: int = CaptureOptions.num_random_points, seed: int = 0) -> Capture:
    """The capture with points to start training from, chosen as `init` says (module doc); one line says
    which when they do not come from the capture itself."""
    if init not in INIT_CHOICES:
        raise SplatforgeError(f"init must be one of {', '.join(INIT_CHOICES)}, got {init!r}")
    if init == "none" or (init == "auto" and capture.has_points):
        return capture
    if init == "sfm":
        if not capture.has_points:
            raise SplatforgeError(f"{capture.path} has no points to start from; use init 'triangulate' or "
                                  "'random' (--init)")
        return capture
    if init in ("auto", "triangulate"):
        try:
            points, colors = triangulated_points(capture, cache_dir)
            print(f"{len(points):,} points triangulated from the {len(capture.train)} training photos "
                  "(poses held fixed)")
            if init == "triangulate" or len(points) >= AUTO_MIN_TRIANGULATED:
                return replace(capture, points=points, colors=colors, points_source="triangulated")
            print(f"fewer than {AUTO_MIN_TRIANGULATED:,}: starting from random points instead")
        except SplatforgeError as err:
            if init == "triangulate":
                raise
            print(f"triangulation failed ({err}); starting from random points in the cameras' common view")
    points, colors = random_points_in_view_volume(capture.train, num_random_points, seed)
    print(f"{len(points):,} random points in the training cameras' common view volume")
    return replace(capture, points=points, colors=colors, points_source="random")
