"""Pinhole cameras in the OpenCV convention, as COLMAP, gsplat and SHARP use them.

- Camera axes: x right, y down, z forward (the camera looks along +z).
- `viewmat` [4, 4] maps world points to camera points (world-to-camera, "extrinsics").
- `K` [3, 3] maps camera points to pixels: u = fx * x / z + cx, v = fy * y / z + cy, in pixels,
  with the centre of the top-left pixel at (0.5, 0.5), so an image's centre is (W/2, H/2).
- Angles are in degrees in every public argument.

`look_at` and `orbit_path` take a WORLD up vector, default +z (`Z_UP`, as in COLMAP scenes
aligned by nerfstudio, Blender and the garden capture). What is "up" in the world is drawn
towards the top of the image (smaller pixel v). For y-up scenes (OpenGL, three.js) pass
`up=(0, 1, 0)`; for scenes in an OpenCV camera frame (SHARP output) pass `up=(0, -1, 0)`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

Z_UP = (0.0, 0.0, 1.0)

VectorLike = Tensor | np.ndarray | Sequence[float]


def fov_to_focal(fov_degrees: float | Tensor, size_pixels: float | Tensor) -> float | Tensor:
    """Focal length in pixels for a field of view (degrees) spanning `size_pixels`."""
    if isinstance(fov_degrees, Tensor) or isinstance(size_pixels, Tensor):
        return size_pixels / (2.0 * torch.tan(torch.deg2rad(torch.as_tensor(fov_degrees)) / 2.0))
    if not 0.0 < fov_degrees < 180.0:
        raise ValueError(f"field of view must be in (0, 180) degrees, got {fov_degrees}")
    if not size_pixels > 0:
        raise ValueError(f"image size must be > 0 pixels, got {size_pixels}")
    return size_pixels / (2.0 * math.tan(math.radians(fov_degrees) / 2.0))


def focal_to_fov(focal_pixels: float | Tensor, size_pixels: float | Tensor) -> float | Tensor:
    """Field of view in degrees spanned by `size_pixels` at a focal length in pixels."""
    if isinstance(focal_pixels, Tensor) or isinstance(size_pixels, Tensor):
        return torch.rad2deg(2.0 * torch.atan(torch.as_tensor(size_pixels) / (2.0 * focal_pixels)))
    if not focal_pixels > 0:
        raise ValueError(f"focal length must be > 0 pixels, got {focal_pixels}")
    return math.degrees(2.0 * math.atan(size_pixels / (2.0 * focal_pixels)))


def intrinsics_from_focal(
    fx: float,
    fy: float | None = None,
    cx: float | None = None,
    cy: float | None = None,
    *,
    width: int | None = None,
    height: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:  # [3, 3]
    """The intrinsics matrix K from focal lengths and principal point, all in pixels.

    `fy` defaults to `fx` (square pixels); `cx`, `cy` default to the image centre
    (`width / 2`, `height / 2`), so pass `width`/`height` or `cx`/`cy`.
    """
    fx = float(fx)
    fy = fx if fy is None else float(fy)
    if not (fx > 0 and fy > 0):
        raise ValueError(f"focal lengths must be > 0 pixels, got fx={fx}, fy={fy}")
    for name, size in (("width", width), ("height", height)):
        if size is not None and not size > 0:
            raise ValueError(f"{name} must be > 0 pixels, got {size}")
    if cx is None:
        if width is None:
            raise ValueError("cx defaults to width / 2: pass width= or cx=")
        cx = width / 2.0
    if cy is None:
        if height is None:
            raise ValueError("cy defaults to height / 2: pass height= or cy=")
        cy = height / 2.0
    return torch.tensor([[fx, 0.0, float(cx)], [0.0, fy, float(cy)], [0.0, 0.0, 1.0]], dtype=dtype)


def intrinsics_from_fov(
    width: int,
    height: int,
    *,
    fov_x_degrees: float | None = None,
    fov_y_degrees: float | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:  # [3, 3]
    """K for an image of `width` x `height` pixels from a horizontal and/or vertical field of
    view in degrees; with only one given, pixels are square. The principal point is the centre."""
    if fov_x_degrees is None and fov_y_degrees is None:
        raise ValueError("pass fov_x_degrees= or fov_y_degrees= (or both)")
    fx = fov_to_focal(fov_x_degrees, width) if fov_x_degrees is not None else None
    fy = fov_to_focal(fov_y_degrees, height) if fov_y_degrees is not None else None
    fx = fy if fx is None else fx
    return intrinsics_from_focal(fx, fy, width=width, height=height, dtype=dtype)


def look_at(
    eye: VectorLike,  # [..., 3]
    target: VectorLike,  # [..., 3]
    up: VectorLike = Z_UP,  # [..., 3]
    dtype: torch.dtype = torch.float32,
) -> Tensor:  # [..., 4, 4]
    """World-to-camera matrices of cameras at `eye` looking at `target` (OpenCV axes).

    Args:
        eye: camera centres, world units.
        target: points each camera looks at; they project to the principal point.
        up: the WORLD up direction (need not be unit or orthogonal to the view direction). World
            points displaced along `up` appear higher in the image (smaller pixel v), so the
            image is upright; the camera x axis is forward x up (to the right).
        dtype: dtype of the result (computed in float64).

    Arguments broadcast against each other. Raises ValueError when eye == target or when `up`
    is parallel to the view direction (a camera looking straight up or down has no defined roll:
    pass a different `up`).
    """
    eye_t, target_t, up_t = (_vec3(v, name) for v, name in ((eye, "eye"), (target, "target"), (up, "up")))
    eye_t, target_t, up_t = torch.broadcast_tensors(eye_t, target_t, up_t)
    offset = target_t - eye_t
    dist = offset.norm(dim=-1)
    scale = 1.0 + eye_t.norm(dim=-1) + target_t.norm(dim=-1)
    if bool((dist <= 1e-12 * scale).any()):
        raise ValueError("eye and target are the same point, so the view direction is undefined")
    up_norm = up_t.norm(dim=-1)
    if bool((up_norm == 0).any()):
        raise ValueError("up must be a non-zero vector")
    forward = offset / dist[..., None]
    right = torch.linalg.cross(forward, up_t / up_norm[..., None], dim=-1)
    right_norm = right.norm(dim=-1)
    if bool((right_norm < 1e-6).any()):
        raise ValueError("up is parallel to the view direction (eye -> target); pass another up vector")
    right = right / right_norm[..., None]
    down = torch.linalg.cross(forward, right, dim=-1)  # completes x right, y down, z forward
    rot = torch.stack([right, down, forward], dim=-2)  # rows: camera axes in world coordinates
    viewmat = torch.zeros((*rot.shape[:-2], 4, 4), dtype=torch.float64)
    viewmat[..., :3, :3] = rot
    viewmat[..., :3, 3] = -(rot @ eye_t[..., None])[..., 0]
    viewmat[..., 3, 3] = 1.0
    return viewmat.to(dtype=dtype, device=_device_of(eye, target, up))


def camera_center(viewmat: Tensor) -> Tensor:  # [..., 4, 4] -> [..., 3]
    """World position of the camera centre of world-to-camera matrices: -R^T t."""
    viewmat = torch.as_tensor(viewmat)
    if viewmat.shape[-2:] != (4, 4):
        raise ValueError(f"viewmat must be [..., 4, 4], got {tuple(viewmat.shape)}")
    rot, t = viewmat[..., :3, :3], viewmat[..., :3, 3]
    return -(rot.transpose(-1, -2) @ t[..., None])[..., 0]


def orbit_path(
    center: VectorLike,  # [3]
    radius: float,
    n_views: int,
    elevation_degrees: float = 20.0,
    up: VectorLike = Z_UP,  # [3]
    start_azimuth_degrees: float = 0.0,
    dtype: torch.dtype = torch.float32,
) -> Tensor:  # [n_views, 4, 4]
    """`n_views` cameras evenly spaced on a circle around `center`, all looking at it.

    Args:
        center: the point looked at, world units.
        radius: distance from every camera to `center`, world units.
        n_views: number of cameras; the circle is not closed (the last view is not the first).
        elevation_degrees: angle of the cameras above the plane normal to `up`, in (-90, 90).
        up: world up vector (see module docstring); the orbit turns counter-clockwise seen from
            above, i.e. right-handed about `up`.
        start_azimuth_degrees: azimuth of the first camera, measured from the world axis least
            aligned with `up` (world +x for the default z-up) projected into the orbit plane.
        dtype: dtype of the result.
    """
    if not radius > 0:
        raise ValueError(f"radius must be > 0 world units, got {radius}")
    if int(n_views) < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}")
    if not -90.0 < elevation_degrees < 90.0:
        raise ValueError(f"elevation_degrees must be in (-90, 90), got {elevation_degrees}")
    center_t, up_t = _vec3(center, "center"), _vec3(up, "up")
    if center_t.shape != (3,) or up_t.shape != (3,):
        raise ValueError(f"center and up must be [3], got {tuple(center_t.shape)} and {tuple(up_t.shape)}")
    if float(up_t.norm()) == 0.0:
        raise ValueError("up must be a non-zero vector")
    up_t = up_t / up_t.norm()
    axis = torch.eye(3, dtype=torch.float64)[int(up_t.abs().argmin())]
    a = axis - (axis @ up_t) * up_t
    a = a / a.norm()
    b = torch.linalg.cross(up_t, a, dim=-1)
    azimuth = torch.deg2rad(
        start_azimuth_degrees + torch.arange(int(n_views), dtype=torch.float64) * (360.0 / int(n_views))
    )
    elevation = math.radians(elevation_degrees)
    directions = math.cos(elevation) * (torch.cos(azimuth)[:, None] * a + torch.sin(azimuth)[:, None] * b)
    eyes = center_t + radius * (directions + math.sin(elevation) * up_t)
    return look_at(eyes, center_t, up_t, dtype=torch.float64).to(dtype=dtype, device=_device_of(center, up))


def project_points(
    points: Tensor,  # [..., N, 3]
    viewmat: Tensor,  # [..., 4, 4]
    K: Tensor,  # [..., 3, 3]
) -> tuple[Tensor, Tensor]:  # [..., N, 2], [..., N]
    """Pixel coordinates and depths (camera z, world units) of world points. Points behind the
    camera (depth <= 0) get meaningless pixel coordinates; check the depth."""
    cam = points @ viewmat[..., :3, :3].transpose(-1, -2) + viewmat[..., None, :3, 3]
    depth = cam[..., 2]
    pix = cam @ K.transpose(-1, -2)
    return pix[..., :2] / depth[..., None], depth


@dataclass(eq=False)
class Camera:
    """One pinhole camera: world-to-camera `viewmat` [4, 4], intrinsics `K` [3, 3] in pixels, and
    the image size in pixels."""

    viewmat: Tensor  # [4, 4]
    K: Tensor  # [3, 3]
    width: int
    height: int

    def __post_init__(self) -> None:
        self.viewmat = torch.as_tensor(self.viewmat)
        self.K = torch.as_tensor(self.K)
        if self.viewmat.shape != (4, 4):
            raise ValueError(f"viewmat must be [4, 4], got {tuple(self.viewmat.shape)}")
        if self.K.shape != (3, 3):
            raise ValueError(f"K must be [3, 3], got {tuple(self.K.shape)}")
        for name in ("width", "height"):
            value = getattr(self, name)
            if int(value) != value or value <= 0:
                raise ValueError(f"{name} must be a positive whole number of pixels, got {value}")
            setattr(self, name, int(value))

    @property
    def center(self) -> Tensor:  # [3]
        return camera_center(self.viewmat)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Camera:
        return Camera(self.viewmat.to(device=device, dtype=dtype), self.K.to(device=device, dtype=dtype),
                      self.width, self.height)


def stack_cameras(cameras: Sequence[Camera]) -> tuple[Tensor, Tensor]:  # [C, 4, 4], [C, 3, 3]
    """(viewmats, Ks) of cameras sharing one image size, the batch rasterization() takes."""
    cameras = list(cameras)
    if not cameras:
        raise ValueError("stack_cameras needs at least one camera")
    sizes = sorted({(c.width, c.height) for c in cameras})
    if len(sizes) > 1:
        raise ValueError(f"cameras in one batch must share an image size, got (width, height) {sizes}")
    return torch.stack([c.viewmat for c in cameras]), torch.stack([c.K for c in cameras])


def _vec3(value: VectorLike, name: str) -> Tensor:  # -> [..., 3] float64 on the CPU
    if isinstance(value, Tensor):
        t = value.detach().cpu()
    else:
        t = torch.as_tensor(np.asarray(value, dtype=np.float64))
    if t.ndim == 0 or t.shape[-1] != 3:
        raise ValueError(f"{name} must be [..., 3], got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} has NaN or inf values")
    return t.to(torch.float64)


def _device_of(*values: object) -> torch.device:
    for value in values:
        if isinstance(value, Tensor):
            return value.device
    return torch.device("cpu")
