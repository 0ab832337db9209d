"""The one type every capture format loads into: `Capture`, a list of `View`s split into train and test.

Everything after loading (trainer, evaluation, viewer, renderer) sees this type and never asks which
format the capture came from. As in nerfstudio's dataparser outputs, a view holds its photo with the
lens distortion already removed, its pinhole intrinsics for that photo, and its pose; the capture holds
the optional points and the normalization between the capture's own frame and the training frame.

Frames:
- the capture's own frame: the frame the capture's file writes its poses and points in (COLMAP's world;
  a transforms.json's frame, i.e. after its `applied_transform`; a Blender scene's world). Exported scenes,
  renders along the capture's cameras and `eval` use this frame.
- the training (normalized) frame: `normalization @ x_capture`, a translation and uniform scale that centres
  the cameras at the origin at unit radius. `View.viewmat` and `Capture.points` are in this frame.
Cameras use OpenCV axes (x right, y down, z forward) in both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SplatforgeError


@dataclass
class View:
    name: str  # as the capture names the photo (COLMAP image name, a json's file_path)
    image: np.ndarray  # [H, W, 3] float32 in [0, 1], undistorted, at the training resolution
    K: np.ndarray  # [3, 3] float64, pinhole intrinsics of `image`
    viewmat: np.ndarray  # [4, 4] float64 world-to-camera (OpenCV axes), normalized frame


@dataclass
class Capture:
    train: list[View]
    test: list[View]
    points: np.ndarray  # [N, 3] float64, normalized frame; N = 0 when the capture has none
    colors: np.ndarray  # [N, 3] uint8
    normalization: np.ndarray  # [4, 4] similarity: normalized = normalization @ capture frame
    path: Path = Path(".")  # the folder or file it was loaded from
    format: str = ""  # "colmap", "transforms" or "blender": for messages only
    viewmats_capture_frame: np.ndarray = field(default_factory=lambda: np.zeros((0, 4, 4)))  # [C, 4, 4]
    # maps the capture's own frame to the frame its source data was in (a transforms.json's inverse
    # `applied_transform`, e.g. the original COLMAP world); identity when there is none
    source_from_capture: np.ndarray = field(default_factory=lambda: np.eye(4))
    points_source: str = "sfm"  # where `points` came from: "sfm", "triangulated", "random" or "none"

    @property
    def world_from_normalized(self) -> np.ndarray:
        return np.linalg.inv(self.normalization)

    @property
    def has_points(self) -> bool:
        return len(self.points) > 0

    def model_viewmats(self) -> np.ndarray:  # [C, 4, 4]
        """World-to-camera matrices of every camera (train and test, sorted by name), in the capture's
        own frame."""
        return self.viewmats_capture_frame

    def points_capture_frame(self) -> np.ndarray:  # [N, 3]
        """`points` mapped back to the capture's own frame."""
        back = self.world_from_normalized
        return self.points @ back[:3, :3].T + back[:3, 3]


def similarity_normalization(camera_centers: np.ndarray) -> np.ndarray:  # [C, 3] -> [4, 4]
    """Translate the cameras' centroid to the origin and scale their largest distance from it to 1.

    No rotation, on purpose: a rotated frame would force rotating every Gaussian's view-dependent
    SH coefficients (Wigner matrices) when the scene is exported back to the capture's frame;
    translation and uniform scale leave SH, quaternions and directions unchanged."""
    center = camera_centers.mean(axis=0)
    radius = np.linalg.norm(camera_centers - center, axis=1).max()
    scale = 1.0 / radius if radius > 0 else 1.0
    transform = np.eye(4)
    transform[:3, :3] *= scale
    transform[:3, 3] = -scale * center
    return transform


@dataclass
class LoadedFrame:
    """One photo as a reader hands it to `assemble`: capture frame, training resolution, undistorted."""

    name: str
    image: np.ndarray  # [H, W, 3] float32
    K: np.ndarray  # [3, 3]
    viewmat: np.ndarray  # [4, 4] world-to-camera, OpenCV axes, capture frame
    aliases: tuple = ()  # other names a test list may use for it (a bare file name)


def select_test(names: list[str], aliases: list[tuple], test_every: int | None, test_list: list[str] | None,
                default_test: set[str] | None = None) -> list[bool]:
    """Which frames are held out. A test list names frames by name or by an alias (a bare file name; an
    alias two frames share is refused); otherwise every `test_every`-th frame by sorted name (0: none);
    otherwise the format's own split (`default_test`), otherwise every 8th."""
    if test_list is not None:
        lookup: dict[str, int] = {}
        ambiguous: set[str] = set()
        for index, (name, extra) in enumerate(zip(names, aliases)):
            for key in {name, *extra}:
                if key in lookup and lookup[key] != index:
                    ambiguous.add(key)
                lookup[key] = index
        chosen = set()
        unknown = []
        for entry in test_list:
            key = entry.strip()
            if key.startswith("./"):
                key = key[2:]
            if key in ambiguous and key not in names:
                raise SplatforgeError(f"test list entry {entry!r} names more than one frame; write its path "
                                      "as the capture does")
            if key not in lookup:
                unknown.append(entry)
            else:
                chosen.add(lookup[key])
        if unknown:
            raise SplatforgeError(f"test list names images the capture does not have: {sorted(unknown)[:5]}")
        return [i in chosen for i in range(len(names))]
    if test_every is None and default_test is not None:
        return [name in default_test for name in names]
    every = 8 if test_every is None else test_every
    if every < 0:
        raise SplatforgeError(f"test_every must be >= 0, got {every}")
    return [every > 0 and i % every == 0 for i in range(len(names))]


def assemble(frames: list[LoadedFrame], points: np.ndarray, colors: np.ndarray, *, path: Path, format: str,
             test_every: int | None, test_list: list[str] | None, normalize: bool = True,
             default_test: set[str] | None = None, source_from_capture: np.ndarray | None = None) -> Capture:
    """Normalize frames and points and split them into a `Capture` (frames sorted by name)."""
    if not frames:
        raise SplatforgeError(f"{path}: the capture has no images")
    frames = sorted(frames, key=lambda f: f.name)
    viewmats = np.stack([f.viewmat for f in frames])
    centers = np.stack([-v[:3, :3].T @ v[:3, 3] for v in viewmats])
    norm = similarity_normalization(centers) if normalize else np.eye(4)
    world_from_norm = np.linalg.inv(norm)
    scale = np.cbrt(np.linalg.det(norm[:3, :3]))
    held_out = select_test([f.name for f in frames], [f.aliases for f in frames], test_every, test_list,
                           default_test)
    train, test = [], []
    for frame, out in zip(frames, held_out):
        # world-to-camera in the normalized frame; scaling camera space by the similarity's scale
        # keeps the matrix rigid and changes no pixel (projection divides by depth)
        viewmat = frame.viewmat @ world_from_norm
        viewmat[:3] *= scale
        (test if out else train).append(View(frame.name, frame.image, frame.K, viewmat))
    if not train:
        raise SplatforgeError(f"{path}: every image is in the test set; nothing is left to train on")
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(points):
        points = points @ norm[:3, :3].T + norm[:3, 3]
    return Capture(train, test, points, np.asarray(colors, dtype=np.uint8).reshape(-1, 3), norm, Path(path), format,
                   viewmats, np.eye(4) if source_from_capture is None else source_from_capture,
                   "sfm" if len(points) else "none")
