"""`make_demo_capture`: photograph the demo scene and write it as a COLMAP capture.

The capture is what `load_capture` reads: `images/view_NNN.png` and a binary COLMAP model in
`sparse/0` with one PINHOLE camera, one registered image per view and a few thousand 3D points
standing in for SfM points. The points are sampled on surfaces the cameras see (a random pixel
of a random view, ray-cast), each keeps the views that see it unoccluded and not edge-on (at
least two), and carries the rendered surface colour plus a little noise (positions too, well
under a pixel), as a real reconstruction's would.

Cameras sit on three orbits around the scene (15, 35 and 55 degrees up, each turned half a step
against the one below) at 3.6 units from the point they look at, with a 55 degree horizontal
field of view. Everything is fixed by the seed; `demo.json` records the parameters, so asking
again for the same capture returns at once.

`sky=True` photographs the outdoor variant (a sky with clouds and a sun glow above far hills, at
infinity: see `scene.Sky`); `elevations` sets the orbits' heights (degrees above the horizon).
The SfM points are sampled only on surfaces, so none lies in the sky or on the far hills, as in
a real reconstruction. `make_sky_capture` is that capture with orbits low enough to see the sky.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from ..core.cameras import fov_to_focal, orbit_path
from ..core.images import save_image
from ..errors import SplatforgeError
from .raycast import (PackedScene, cast_rays, linear_to_srgb, occluded, pack_scene, pixel_rays, render_views,
                      shade_points, surface_normals)
from .scene import make_scene

FORMAT_VERSION = 1  # bump when the scene, cameras or files change, so old captures are re-made
ELEVATIONS_DEGREES = (15.0, 35.0, 55.0)
ORBIT_RADIUS = 3.6
FOV_X_DEGREES = 55.0
SAMPLES_PER_SIDE = 2
MAX_OBLIQUITY_DEGREES = 78.0  # views seeing a surface more edge-on than this do not observe its points
POINT_POSITION_NOISE = 0.002  # scene units (~0.15 px at the orbit's distance)
POINT_COLOR_NOISE = 3.0  # standard deviation, in 8-bit levels
MANIFEST = "demo.json"


SKY_ELEVATIONS_DEGREES = (2.0, 9.0, 18.0)  # low orbits: the horizon and sky fill the upper part of most photos


def demo_cameras(num_views: int, width: int, height: int, look_at=(0.0, 0.0, 0.3),
                 elevations=ELEVATIONS_DEGREES) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera matrices [num_views, 4, 4] and intrinsics [num_views, 3, 3] of the demo's
    orbits (one per elevation, degrees), ring by ring from the first; views are split as evenly as
    the rings allow."""
    rings = len(elevations)
    counts = [num_views // rings + (1 if r < num_views % rings else 0) for r in range(rings)]
    viewmats = []
    for ring, (count, elevation) in enumerate(zip(counts, elevations)):
        if count == 0:
            continue
        start = 0.5 * ring * 360.0 / count  # interleave the rings' azimuths
        viewmats.append(orbit_path(look_at, ORBIT_RADIUS, count, elevation, start_azimuth_degrees=start,
                                   dtype=torch.float64).numpy())
    focal = fov_to_focal(FOV_X_DEGREES, width)
    k = np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])
    viewmats = np.concatenate(viewmats)
    return viewmats, np.repeat(k[None], len(viewmats), axis=0)


def _project(viewmat: np.ndarray, k: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cam = points @ viewmat[:3, :3].T + viewmat[:3, 3]
    z = cam[:, 2]
    safe = np.where(z > 1e-9, z, 1.0)
    return np.stack([k[0, 0] * cam[:, 0] / safe + k[0, 2], k[1, 1] * cam[:, 1] / safe + k[1, 2]], axis=1), z


def observations(packed: PackedScene, points: np.ndarray, index: np.ndarray, viewmats: np.ndarray, Ks: np.ndarray,
                 width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Which views see each surface point: seen [C, N] bool and pixel positions xy [C, N, 2].

    A view sees a point when it projects inside the image (half a pixel from the border), lies
    in front of the camera, nothing is in the way, and the surface is not within
    90 - MAX_OBLIQUITY_DEGREES of edge-on."""
    normals = surface_normals(packed, points, index)
    seen = np.zeros((len(viewmats), len(points)), dtype=bool)
    xy = np.zeros((len(viewmats), len(points), 2))
    cos_limit = math.cos(math.radians(MAX_OBLIQUITY_DEGREES))
    for c, (viewmat, k) in enumerate(zip(viewmats, Ks)):
        uv, z = _project(viewmat, k, points)
        inside = ((z > 1e-6) & (uv[:, 0] >= 0.5) & (uv[:, 0] <= width - 0.5)
                  & (uv[:, 1] >= 0.5) & (uv[:, 1] <= height - 0.5))
        center = -viewmat[:3, :3].T @ viewmat[:3, 3]
        to_point = points - center
        dist = np.linalg.norm(to_point, axis=1)
        dirs = to_point / dist[:, None]
        facing = np.abs(np.einsum("ij,ij->i", normals, dirs)) >= cos_limit
        candidates = np.flatnonzero(inside & facing)
        if len(candidates):
            # the point's own surface is hit at ~dist; anything clearly nearer occludes it
            hidden = occluded(packed, np.broadcast_to(center, (len(candidates), 3)), dirs[candidates],
                              dist[candidates] * (1.0 - 1e-7) - 1e-5)
            seen[c, candidates[~hidden]] = True
        xy[c] = uv
    return seen, xy


def sample_scene_points(packed: PackedScene, viewmats: np.ndarray, Ks: np.ndarray, width: int, height: int,
                        num_points: int, rng: np.random.Generator):
    """`num_points` surface points seen by at least two views: (points [N, 3], shape index [N],
    seen [C, N], xy [C, N, 2], source view [N])."""
    parts: dict[str, list[np.ndarray]] = {"points": [], "index": [], "seen": [], "xy": [], "source": []}
    total = 0
    for _ in range(20):
        count = max(2 * (num_points - total), 64)
        view = rng.integers(0, len(viewmats), size=count)
        u = rng.uniform(0.0, width, size=count)
        v = rng.uniform(0.0, height, size=count)
        origins = np.empty((count, 3))
        dirs = np.empty((count, 3))
        for c in np.unique(view):
            sel = view == c
            origins[sel], dirs[sel] = pixel_rays(viewmats[c], Ks[c], u[sel], v[sel])
        t, index = cast_rays(packed, origins, dirs)
        hit = np.flatnonzero(index >= 0)
        points = origins[hit] + t[hit, None] * dirs[hit]
        seen, xy = observations(packed, points, index[hit], viewmats, Ks, width, height)
        # seen by two views, one of them (not edge-on) the view it was sampled from
        good = (seen.sum(axis=0) >= 2) & seen[view[hit], np.arange(len(hit))]
        take = np.flatnonzero(good)[: num_points - total]
        for key, value, axis in (("points", points, 0), ("index", index[hit], 0), ("seen", seen, 1), ("xy", xy, 1),
                                 ("source", view[hit], 0)):
            parts[key].append(np.take(value, take, axis=axis))
        total += len(take)
        if total >= num_points:
            break
    if total == 0:
        raise SplatforgeError("no surface point of the demo scene is seen by two views; use more views")
    axes = {"points": 0, "index": 0, "seen": 1, "xy": 1, "source": 0}
    return tuple(np.concatenate(parts[key], axis=axes[key]) for key in ("points", "index", "seen", "xy", "source"))


def _write_model(sparse_dir: Path, names: list[str], viewmats: np.ndarray, k: np.ndarray, width: int, height: int,
                 points: np.ndarray, colors: np.ndarray, seen: np.ndarray, xy: np.ndarray) -> None:
    try:
        import pycolmap
    except ImportError as exc:  # pragma: no cover - pycolmap is a dependency
        raise SplatforgeError("writing the demo capture needs pycolmap: pip install pycolmap") from exc
    rec = pycolmap.Reconstruction()
    camera = pycolmap.Camera.create_from_model_name(1, "PINHOLE", float(k[0, 0]), width, height)
    camera.params = np.array([k[0, 0], k[1, 1], k[0, 2], k[1, 2]], dtype=np.float64)
    rec.add_camera_with_trivial_rig(camera)
    point2d_index = np.full(seen.shape, -1, dtype=np.int64)  # [C, N]: the point's row in each image's list
    for c, name in enumerate(names):
        image_id = c + 1
        visible = np.flatnonzero(seen[c])
        point2d_index[c, visible] = np.arange(len(visible))
        image = pycolmap.Image(name=name, camera_id=1, image_id=image_id)
        image.points2D = pycolmap.Point2DList([pycolmap.Point2D(xy[c, n]) for n in visible])
        rec.add_image_with_trivial_frame(image)
        rec.frame(image_id).rig_from_world = pycolmap.Rigid3d(viewmats[c, :3, :4])
        rec.register_frame(image_id)
    for n in range(len(points)):
        track = pycolmap.Track()
        track.add_elements([pycolmap.TrackElement(c + 1, int(point2d_index[c, n])) for c in np.flatnonzero(seen[:, n])])
        rec.add_point3D(points[n], track, colors[n])
    sparse_dir.mkdir(parents=True, exist_ok=True)
    rec.write_binary(str(sparse_dir))


def _manifest(num_views: int, width: int, height: int, seed: int, num_points: int, sky: bool,
              elevations: tuple) -> dict:
    manifest = {"generator": "splatforge.demo", "version": FORMAT_VERSION, "num_views": num_views, "width": width,
                "height": height, "seed": seed, "num_points": num_points, "samples_per_side": SAMPLES_PER_SIDE,
                "fov_x_degrees": FOV_X_DEGREES, "background": list(make_scene(seed).background)}
    if sky:  # only then, so the default capture's manifest (and an existing capture) stays as it was
        manifest["sky"] = True
    if tuple(elevations) != ELEVATIONS_DEGREES:
        manifest["elevations"] = [float(e) for e in elevations]
    return manifest


def _view_names(num_views: int) -> list[str]:
    return [f"view_{i:03d}.png" for i in range(num_views)]


def _is_complete(out_dir: Path, manifest: dict) -> bool:
    try:
        stored = json.loads((out_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if stored != manifest:
        return False
    sparse = out_dir / "sparse" / "0"
    return all((sparse / f"{name}.bin").is_file() for name in ("cameras", "images", "points3D")) and all(
        (out_dir / "images" / name).is_file() for name in _view_names(manifest["num_views"]))


def _clear_previous(out_dir: Path) -> None:
    """Remove what an earlier demo capture (other parameters) wrote, and caches derived from it."""
    (out_dir / MANIFEST).unlink(missing_ok=True)
    for path in (out_dir / "images").glob("view_*.png"):
        path.unlink()
    shutil.rmtree(out_dir / "sparse" / "0", ignore_errors=True)
    for path in out_dir.iterdir():
        if path.is_dir() and re.fullmatch(r"images_\d+(_cache)?", path.name):
            shutil.rmtree(path)


def _check_int(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise SplatforgeError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


def make_demo_capture(out_dir: str | os.PathLike, *, num_views: int = 48, width: int = 256, height: int = 256,
                      seed: int = 0, num_points: int = 4000, progress: bool = False, sky: bool = False,
                      elevations: tuple = ELEVATIONS_DEGREES) -> Path:
    """Render the demo scene (see `splatforge.demo.scene`) from `num_views` cameras and write a
    COLMAP capture to `out_dir` (see the module docstring); returns `out_dir`.

    Args:
        out_dir: a new or empty folder, or one holding an earlier demo capture (recognised by its
            demo.json). Same parameters: nothing is redone. Other parameters: the earlier images,
            model and resized-image caches are replaced.
        num_views: number of photos (3-1000), on three orbits; load_capture holds out every 8th.
        width, height: photo size in pixels (16-4096).
        seed: picks the scene (objects, colours, light) and the SfM points.
        num_points: how many SfM points to write (1-1,000,000).
        progress: show a progress bar while rendering.
        sky: an outdoor sky and far hills at infinity instead of the black background.
        elevations: the orbits' heights, degrees above the horizon (each in -10..89), low to high.

    Raises:
        SplatforgeError: bad arguments, or `out_dir` is a file or a folder with other contents.
    """
    num_views = _check_int("num_views", num_views, 3, 1000)
    width = _check_int("width", width, 16, 4096)
    height = _check_int("height", height, 16, 4096)
    seed = _check_int("seed", seed, 0, 2**31 - 1)
    num_points = _check_int("num_points", num_points, 1, 1_000_000)
    try:
        elevations = tuple(float(e) for e in elevations)
    except (TypeError, ValueError):
        raise SplatforgeError(f"elevations must be numbers (degrees), got {elevations!r}") from None
    if not elevations or len(elevations) > num_views or not all(-10.0 <= e <= 89.0 for e in elevations):
        raise SplatforgeError(f"elevations must be 1 to num_views angles in [-10, 89] degrees, got {elevations!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise SplatforgeError(f"{out_dir}: exists and is not a folder; pick a folder for the demo capture")
    manifest = _manifest(num_views, width, height, seed, num_points, bool(sky), elevations)
    if _is_complete(out_dir, manifest):
        return out_dir
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not (out_dir / MANIFEST).is_file():
            raise SplatforgeError(f"{out_dir}: not empty and not a demo capture (no {MANIFEST}); "
                                  "pick a new or empty folder")
        _clear_previous(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    scene = make_scene(seed, sky=bool(sky))
    packed = pack_scene(scene)
    viewmats, Ks = demo_cameras(num_views, width, height, scene.look_at, elevations)
    names = _view_names(num_views)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=num_views, desc="demo: rendering", unit="view", dynamic_ncols=True)
    try:
        views = render_views(packed, viewmats, Ks, width, height, SAMPLES_PER_SIDE, seed,
                             progress=(lambda done: bar.update(1)) if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    for name, view in zip(names, views):
        save_image(out_dir / "images" / name, view.image)

    rng = np.random.default_rng([seed, 1])
    points, index, seen, xy, source = sample_scene_points(packed, viewmats, Ks, width, height, num_points, rng)
    centers = np.stack([-vm[:3, :3].T @ vm[:3, 3] for vm in viewmats])
    radiance = shade_points(packed, points, index, points - centers[source])
    colors = np.clip(np.round(linear_to_srgb(radiance) * 255 + rng.normal(0.0, POINT_COLOR_NOISE, radiance.shape)),
                     0, 255).astype(np.uint8)
    noisy = points + rng.normal(0.0, POINT_POSITION_NOISE, points.shape)
    _write_model(out_dir / "sparse" / "0", names, viewmats, Ks[0], width, height, noisy, colors, seen, xy)
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out_dir


def make_sky_capture(out_dir: str | os.PathLike, *, num_views: int = 48, width: int = 256, height: int = 256,
                     seed: int = 0, num_points: int = 4000, progress: bool = False) -> Path:
    """The outdoor demo capture: `make_demo_capture` with `sky=True` on low orbits
    (SKY_ELEVATIONS_DEGREES) that see the horizon, the far hills and the sky. Every 8th view, which
    `load_capture` holds out, lies between two training views of its orbit."""
    return make_demo_capture(out_dir, num_views=num_views, width=width, height=height, seed=seed,
                             num_points=num_points, progress=progress, sky=True, elevations=SKY_ELEVATIONS_DEGREES)
