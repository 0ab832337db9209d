"""nerfstudio / instant-ngp `transforms.json` captures, and the frame parsing Blender scenes share.

What is read (checked against nerfstudio's `nerfstudio_dataparser.py` and instant-ngp's format):
- intrinsics at the top level or per frame (a frame's keys win): `fl_x fl_y cx cy w h`, or
  `camera_angle_x` (and `camera_angle_y`) in radians; `fl_y` defaults to `fl_x`, `cx cy` to the
  centre, `w h` to the photo's size;
- `camera_model` PINHOLE, OPENCV or OPENCV_FISHEYE with `k1 k2 k3 k4 p1 p2`; without `camera_model`
  (instant-ngp) the keys alone say it: `is_fisheye`, else OPENCV when any coefficient is set;
- `transform_matrix`: camera-to-world in OpenGL axes (x right, y up, z back), turned into OpenCV
  world-to-camera by flipping the camera's y and z;
- `applied_transform` (3x4, what nerfstudio applied to the original COLMAP world): the poses and the
  points of `ply_file_path` are already in the json's frame, which is the capture's own frame here
  (exports come out in it); its inverse is kept as `Capture.source_from_capture`;
- `ply_file_path`: points (x y z, red green blue) in the json's frame;
- `file_path` relative to the json, with or without extension (`.png`, `.jpg`, ... are tried);
  a downscale N reads `images_N/<file name>` beside the json when that exists, as nerfstudio does.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SplatforgeError
from .photos import (DEFAULT_LONG_SIDE, Lens, composite, parallel_map, read_photo, scaled_size, training_downscale,
                     undistort, upright_size)
from .types import LoadedFrame

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".JPG", ".JPEG", ".PNG", ".webp", ".tif", ".tiff", ".bmp")
CAMERA_MODELS = {"PINHOLE": "pinhole", "SIMPLE_PINHOLE": "pinhole", "OPENCV": "opencv",
                 "OPENCV_FISHEYE": "fisheye"}
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_angle_y", "k1", "k2", "k3",
                   "k4", "p1", "p2", "camera_model", "is_fisheye")


@dataclass
class FrameSpec:
    """One frame of a json, parsed and checked, before its photo is read."""

    name: str  # file_path as written, without a leading "./"
    path: Path  # the photo on disk
    size: tuple[int, int]  # (w, h) the intrinsics are for
    K: np.ndarray  # [3, 3] for `size`
    lens: Lens
    viewmat: np.ndarray  # [4, 4] world-to-camera, OpenCV axes, the json's frame


def read_json(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except OSError as err:
        raise SplatforgeError(f"cannot read {path}: {err.strerror or err}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SplatforgeError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(meta, dict):
        raise SplatforgeError(f"{path}: expected a JSON object with a 'frames' list")
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise SplatforgeError(f"{path}: no frames (expected a non-empty 'frames' list)")
    return meta


def _number(value, where: str, key: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SplatforgeError(f"{where}: '{key}' must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise SplatforgeError(f"{where}: '{key}' is {value!r}, not a finite number")
    return number


def _matrix(value, where: str, key: str, rows: tuple[int, ...]) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise SplatforgeError(f"{where}: '{key}' must be a matrix of numbers") from None
    if m.ndim != 2 or m.shape[1] != 4 or m.shape[0] not in rows:
        raise SplatforgeError(f"{where}: '{key}' must be {' or '.join(f'{r}x4' for r in rows)}, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise SplatforgeError(f"{where}: '{key}' holds NaN or infinite values")
    if m.shape[0] == 3:
        m = np.vstack([m, [0.0, 0.0, 0.0, 1.0]])
    rot = m[:3, :3]
    det = np.linalg.det(rot)
    if abs(det) < 1e-6 or not np.allclose(m[3], [0, 0, 0, 1]):
        raise SplatforgeError(f"{where}: '{key}' is singular (its rotation part has determinant {det:.3g})")
    u, s, vt = np.linalg.svd(rot)
    if np.max(np.abs(s - 1.0)) > 1e-2 or det < 0:
        raise SplatforgeError(f"{where}: '{key}' is not a rigid transform (its 3x3 part has singular values "
                              f"{np.round(s, 4).tolist()} and determinant {det:.3g}; expected a rotation)")
    m[:3, :3] = u @ vt  # rounding in the file, removed
    return m


def find_photo(json_dir: Path, file_path: str) -> Path | None:
    """The photo a frame's file_path names: as written, or with one of the usual extensions added."""
    path = json_dir / file_path
    if path.is_file():
        return path
    for suffix in IMAGE_SUFFIXES:
        candidate = path.with_name(path.name + suffix)
        if candidate.is_file():
            return candidate
    return None


def parse_frames(meta: dict, json_path: Path, skip_missing: bool = False,
                 max_pixels: int | None = None) -> list[FrameSpec]:
    """Every frame of a transforms json, checked; errors name the json and the frame."""
    json_dir = json_path.parent
    top = {k: meta[k] for k in _INTRINSIC_KEYS if k in meta}
    specs, missing = [], []
    for index, frame in enumerate(meta["frames"]):
        if not isinstance(frame, dict) or "file_path" not in frame:
            raise SplatforgeError(f"{json_path}: frame {index} has no 'file_path'")
        written = str(frame["file_path"])
        name = written[2:] if written.startswith("./") else written
        where = f"{json_path}: frame {index} ({written})"
        if "transform_matrix" not in frame:
            raise SplatforgeError(f"{where}: no 'transform_matrix'")
        c2w = _matrix(frame["transform_matrix"], where, "transform_matrix", (3, 4))
        path = find_photo(json_dir, written)
        if path is None:
            if skip_missing:
                missing.append(written)
                continue
            raise SplatforgeError(f"{where}: the image file {json_dir / written} is missing (pass skip_missing / "
                                  "--skip-missing to train without such frames)")
        keys = {**top, **{k: frame[k] for k in _INTRINSIC_KEYS if k in frame}}
        if "w" in keys and "h" in keys:
            w, h = int(_number(keys["w"], where, "w")), int(_number(keys["h"], where, "h"))
        else:
            w, h = upright_size(path, max_pixels)
        if w < 1 or h < 1:
            raise SplatforgeError(f"{where}: image size {w}x{h} is not positive")
        if "fl_x" in keys:
            fx = _number(keys["fl_x"], where, "fl_x")
        elif "camera_angle_x" in keys:
            fx = 0.5 * w / math.tan(0.5 * _number(keys["camera_angle_x"], where, "camera_angle_x"))
        else:
            raise SplatforgeError(f"{where}: no focal length ('fl_x' or 'camera_angle_x', at the top level or in "
                                  "the frame)")
        if "fl_y" in keys:
            fy = _number(keys["fl_y"], where, "fl_y")
        elif "camera_angle_y" in keys:
            fy = 0.5 * h / math.tan(0.5 * _number(keys["camera_angle_y"], where, "camera_angle_y"))
        else:
            fy = fx
        if not (fx > 0 and fy > 0):
            raise SplatforgeError(f"{where}: focal lengths must be positive, got {fx:g}, {fy:g}")
        cx = _number(keys["cx"], where, "cx") if "cx" in keys else w / 2.0
        cy = _number(keys["cy"], where, "cy") if "cy" in keys else h / 2.0
        coeffs = {k: _number(keys.get(k, 0.0), where, k) for k in ("k1", "k2", "k3", "k4", "p1", "p2")}
        if "camera_model" in keys:
            model = CAMERA_MODELS.get(str(keys["camera_model"]))
            if model is None:
                raise SplatforgeError(f"{where}: camera_model {keys['camera_model']!r} is not supported; supported: "
                                      f"{', '.join(CAMERA_MODELS)}")
        elif keys.get("is_fisheye"):
            model = "fisheye"
        else:
            model = "opencv" if any(coeffs.values()) else "pinhole"
        if model == "pinhole":
            coeffs = {k: 0.0 for k in coeffs}
        elif model == "fisheye" and (coeffs["p1"] or coeffs["p2"]):
            raise SplatforgeError(f"{where}: an OPENCV_FISHEYE camera has no tangential terms, but p1/p2 are set")
        k = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        viewmat = np.linalg.inv(c2w @ OPENGL_TO_OPENCV)
        specs.append(FrameSpec(name, path, (w, h), k, Lens(model, **coeffs), viewmat))
    if missing:
        print(f"{json_path}: skipped {len(missing)} frame(s) whose image file is missing, e.g. {missing[0]}")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise SplatforgeError(f"{json_path}: two frames name the same image {dup!r}")
    return specs


def load_frames(specs: list[FrameSpec], json_dir: Path, downscale: int | None, long_side_limit: int,
                background: tuple[float, float, float], max_pixels: int | None,
                same_size: bool = False) -> list[LoadedFrame]:
    """Read every frame's photo at the training resolution, undistorted, alpha composited on `background`."""
    if same_size:
        sizes = {s.size for s in specs}
        if len(sizes) > 1:
            odd = next(s for s in specs if s.size != specs[0].size)
            raise SplatforgeError(f"{odd.path} is {odd.size[0]}x{odd.size[1]} but {specs[0].path} is "
                                  f"{specs[0].size[0]}x{specs[0].size[1]}: a Blender scene's photos must all be "
                                  "one size")
    factor = training_downscale([s.size for s in specs], downscale, long_side_limit)

    def load(spec: FrameSpec) -> LoadedFrame:
        w, h = spec.size
        small = json_dir / f"images_{factor}" / spec.path.name
        source = small if factor > 1 and small.is_file() else spec.path
        photo = read_photo(source, 1 if source == small else factor, max_pixels, keep_alpha=True)
        want = scaled_size((w, h), factor)
        got = (photo.shape[1], photo.shape[0])
        if abs(got[0] - want[0]) > 1 or abs(got[1] - want[1]) > 1:
            message = (f"{spec.path} is {got[0] * factor}x{got[1] * factor} but its frame says {w}x{h}"
                       if source == spec.path else
                       f"{source} is {got[0]}x{got[1]} but the frame's {w}x{h} at 1/{factor} is {want[0]}x{want[1]}")
            if abs(got[0] - want[1]) <= 1 and abs(got[1] - want[0]) <= 1:
                message += "; the photo carries an EXIF rotation the poses were not made with"
            raise SplatforgeError(message)
        photo = composite(photo, background)
        k = spec.K.copy()
        k[0] *= got[0] / w
        k[1] *= got[1] / h
        photo = undistort(photo, k, spec.lens)
        return LoadedFrame(spec.name, photo, k, spec.viewmat, (spec.path.name, spec.path.stem, Path(spec.name).stem))

    return parallel_map(load, specs)


def read_points(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Points and colours of a point-cloud PLY (x y z, and red green blue if present)."""
    from ..io.ply_format import read_ply_elements

    if not path.is_file():
        raise SplatforgeError(f"{path}: the json's ply_file_path names a file that does not exist")
    elements = read_ply_elements(path).elements
    vertex = elements.get("vertex")
    if vertex is None or not all(k in vertex.dtype.names for k in "xyz"):
        raise SplatforgeError(f"{path}: no vertex element with x, y, z")
    points = np.stack([vertex[k] for k in "xyz"], axis=1).astype(np.float64)
    finite = np.all(np.isfinite(points), axis=1)
    if all(k in vertex.dtype.names for k in ("red", "green", "blue")):
        colors = np.stack([vertex[k] for k in ("red", "green", "blue")], axis=1)
        if colors.dtype.kind == "f":
            colors = np.clip(colors * 255.0 + 0.5, 0, 255)
        colors = colors.astype(np.uint8)
    else:
        colors = np.full((len(points), 3), 128, np.uint8)
    return points[finite], colors[finite]


def read_transforms_capture(json_path: Path, downscale: int | None = None, long_side_limit: int = DEFAULT_LONG_SIDE,
                            background: tuple[float, float, float] = (0.0, 0.0, 0.0),
                            max_pixels: int | None = 64_000_000, skip_missing: bool = False):
    """(frames, points, colors, source_from_capture, json's own split) of a transforms.json, in its frame."""
    meta = read_json(json_path)
    specs = parse_frames(meta, json_path, skip_missing, max_pixels)
    source_from_capture = np.eye(4)
    if "applied_transform" in meta:
        applied = _matrix(meta["applied_transform"], str(json_path), "applied_transform", (3, 4))
        source_from_capture = np.linalg.inv(applied)
    points, colors = np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    if meta.get("ply_file_path"):
        points, colors = read_points(json_path.parent / str(meta["ply_file_path"]))
    frames = load_frames(specs, json_path.parent, downscale, long_side_limit, background, max_pixels)
    split = None
    if isinstance(meta.get("test_filenames"), list):
        split = {str(n)[2:] if str(n).startswith("./") else str(n) for n in meta["test_filenames"]}
    return frames, points, colors, source_from_capture, split
