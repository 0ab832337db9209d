"""Points for a capture that has poses but no points: SIFT features matched between photos whose
cameras look at the same part of the scene, triangulated by pycolmap with every pose held fixed.

This is COLMAP's `point_triangulator`, the standard way to make an SfM-like point cloud for known
cameras (transforms.json without a PLY, Blender scenes). Poses and intrinsics are not changed; only
the 3D points are estimated, in the capture's own frame.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import SplatforgeError
from ._colmap_steps import extract_features, match_pairs, quiet_colmap

DEFAULT_MIN_POINTS = 100
# Each photo is matched with this many others, the ones whose cameras are nearest in position and
# direction: all pairs of a 300-photo capture would be 44,850 matchings (minutes on a CPU).
DEFAULT_NEIGHBOURS = 12


def triangulate_known_poses(
    images: list[np.ndarray],  # C x [H_i, W_i, 3] float32 in [0, 1], undistorted
    Ks: np.ndarray,  # [C, 3, 3] pinhole intrinsics, pixels
    viewmats: np.ndarray,  # [C, 4, 4] world-to-camera, OpenCV axes
    min_points: int = DEFAULT_MIN_POINTS,
    neighbours: int = DEFAULT_NEIGHBOURS,
    max_image_size: int = 1600,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:  # points [N, 3] float64, colours [N, 3] uint8
    """Triangulate SIFT matches between posed photos with the poses and intrinsics held fixed.

    Args:
        images: the photos, HxWx3 float32 in [0, 1], undistorted (pinhole); they may differ in size.
        Ks: [C, 3, 3] pinhole intrinsics in pixels of each photo as given (pixel centres at +0.5).
        viewmats: [C, 4, 4] world-to-camera transforms (OpenCV axes: x right, y down, z forward) in
            the capture's own frame; the points come back in that frame.
        min_points: fewer triangulated points than this raises SplatforgeError.
        neighbours: each photo is matched with this many others (nearest cameras that look the same
            way); all pairs when there are fewer photos.
        max_image_size: SIFT runs on photos scaled down to this long side (intrinsics follow).
        progress: tqdm bars for feature extraction and matching.

    Returns:
        (points [N, 3] float64, colours [N, 3] uint8), colours averaged from the photos.

    Raises:
        SplatforgeError: fewer than two photos, or fewer than `min_points` points triangulated
            (photos without texture, cameras that share no view, or wrong poses).
    """
    model = triangulated_model(images, Ks, viewmats, neighbours, max_image_size, progress)
    points, colors = _points_and_colors(model)
    if len(points) < min_points:
        raise SplatforgeError(
            f"triangulation with the capture's poses found {len(points)} points (needs {min_points}): the photos "
            "match too little (little texture, little overlap) or the poses do not fit the photos; start from "
            "random points instead (init 'random')")
    return points, colors


def triangulated_model(
    images: list[np.ndarray],  # C x [H_i, W_i, 3] float32 in [0, 1]
    Ks: np.ndarray,  # [C, 3, 3]
    viewmats: np.ndarray,  # [C, 4, 4]
    neighbours: int = DEFAULT_NEIGHBOURS,
    max_image_size: int = 1600,
    progress: bool = True,
):
    """`triangulate_known_poses` returning pycolmap's Reconstruction (cameras at the processed size,
    the fixed poses, points with their tracks), for callers that want its tracks and errors."""
    Ks = np.asarray(Ks, np.float64)
    viewmats = np.asarray(viewmats, np.float64)
    count = len(images)
    if Ks.shape != (count, 3, 3) or viewmats.shape != (count, 4, 4):
        raise ValueError(f"expected Ks [{count}, 3, 3] and viewmats [{count}, 4, 4] for {count} images, "
                         f"got {Ks.shape} and {viewmats.shape}")
    for i, image in enumerate(images):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"images[{i}] must be [H, W, 3], got {image.shape}")
    if count < 2:
        raise SplatforgeError(f"triangulation needs at least two posed photos, got {count}")
    import pycolmap

    with tempfile.TemporaryDirectory(prefix="splatforge-triangulate-") as tmp, quiet_colmap():
        root = Path(tmp)
        names, scaled_Ks = _write_photos(root / "images", images, Ks, max_image_size)
        database = root / "database.db"
        extract_features(database, root / "images", names, "PINHOLE", single_camera=False,
                         max_image_size=max_image_size, progress=progress)
        reconstruction = _posed_reconstruction(database, names, scaled_Ks, viewmats)
        pairs = [(names[i], names[j]) for i, j in _neighbour_pairs(viewmats, neighbours)]
        match_pairs(database, pairs, root, progress=progress)
        (root / "sparse").mkdir()
        return pycolmap.triangulate_points(reconstruction, database, root / "images", root / "sparse",
                                           clear_points=True, refine_intrinsics=False)


def _write_photos(folder: Path, images: list[np.ndarray], Ks: np.ndarray,
                  max_image_size: int) -> tuple[list[str], np.ndarray]:
    """Save the photos as PNG (scaled to `max_image_size` long side) and return their names and the
    intrinsics of the saved sizes."""
    folder.mkdir(parents=True)
    names, scaled = [], Ks.copy()
    for i, image in enumerate(images):
        height, width = image.shape[:2]
        pixels = Image.fromarray((np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
        factor = min(1.0, max_image_size / max(width, height))
        if factor < 1.0:
            size = (max(1, round(width * factor)), max(1, round(height * factor)))
            pixels = pixels.resize(size, Image.LANCZOS)
            sx, sy = size[0] / width, size[1] / height
            scaled[i, 0] *= sx  # fx, skew, cx: pixel centres at +0.5 scale with the image
            scaled[i, 1] *= sy
        name = f"{i:05d}.png"
        pixels.save(folder / name)
        names.append(name)
    return names, scaled


def _posed_reconstruction(database: Path, names: list[str], Ks: np.ndarray, viewmats: np.ndarray):
    """A pycolmap Reconstruction of the database's images with our intrinsics and poses (the database
    cameras updated to match, as the triangulator reads them from there too)."""
    import pycolmap

    reconstruction = pycolmap.Reconstruction()
    db = pycolmap.Database.open(database)
    try:
        by_name = {image.name: image for image in db.read_all_images()}
        for index, name in enumerate(names):
            image = by_name[name]
            camera = db.read_camera(image.camera_id)
            fx, fy, cx, cy = Ks[index, 0, 0], Ks[index, 1, 1], Ks[index, 0, 2], Ks[index, 1, 2]
            camera = pycolmap.Camera.create_from_model_name(image.camera_id, "PINHOLE", float(fx), camera.width,
                                                            camera.height)
            camera.params = [fx, fy, cx, cy]
            db.update_camera(camera)
            reconstruction.add_camera_with_trivial_rig(camera)
            posed = pycolmap.Image(name=name, camera_id=image.camera_id, image_id=image.image_id)
            reconstruction.add_image_with_trivial_frame(posed, pycolmap.Rigid3d(viewmats[index, :3, :4]))
    finally:
        db.close()
    return reconstruction


def _neighbour_pairs(viewmats: np.ndarray, neighbours: int) -> list[tuple[int, int]]:
    """Each camera with its `neighbours` nearest others by a distance that adds the centres' distance
    (in units of the rig's median spacing) to the angle between their viewing directions."""
    count = len(viewmats)
    if count - 1 <= neighbours:
        return [(i, j) for i in range(count) for j in range(i + 1, count)]
    rotations = viewmats[:, :3, :3]
    centres = -np.einsum("cji,cj->ci", rotations, viewmats[:, :3, 3])
    forward = rotations[:, 2, :]  # camera z axis in world coordinates
    distance = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    spacing = np.median(np.sort(distance, axis=1)[:, 1]) or 1.0
    angle = np.arccos(np.clip(forward @ forward.T, -1.0, 1.0))
    score = distance / spacing * 0.25 + angle / np.radians(15.0)
    np.fill_diagonal(score, np.inf)
    pairs = set()
    for i in range(count):
        for j in np.argsort(score[i])[:neighbours]:
            pairs.add((min(i, int(j)), max(i, int(j))))
    return sorted(pairs)


def _points_and_colors(reconstruction) -> tuple[np.ndarray, np.ndarray]:
    points = reconstruction.points3D
    if not points:
        return np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    xyz = np.array([p.xyz for p in points.values()], np.float64)
    rgb = np.array([p.color for p in points.values()], np.uint8)
    return xyz, rgb
