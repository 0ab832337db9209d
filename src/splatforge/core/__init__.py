"""The bottom layer: the Gaussians container, cameras, image loading and spherical harmonics."""

from splatforge.core.cameras import (
    Camera,
    camera_center,
    focal_to_fov,
    fov_to_focal,
    intrinsics_from_focal,
    intrinsics_from_fov,
    look_at,
    orbit_path,
    project_points,
    stack_cameras,
)
from splatforge.core.gaussians import Gaussians
from splatforge.core.images import DEFAULT_MAX_PIXELS, load_image, load_image_bytes, save_image, to_uint8
from splatforge.core.knn import nearest_neighbors
from splatforge.core.sh import C0, eval_sh, num_sh_bases, rgb_to_sh, sh_to_rgb

__all__ = [
    "C0",
    "DEFAULT_MAX_PIXELS",
    "Camera",
    "Gaussians",
    "camera_center",
    "eval_sh",
    "focal_to_fov",
    "fov_to_focal",
    "intrinsics_from_focal",
    "intrinsics_from_fov",
    "load_image",
    "load_image_bytes",
    "look_at",
    "nearest_neighbors",
    "num_sh_bases",
    "orbit_path",
    "project_points",
    "rgb_to_sh",
    "save_image",
    "sh_to_rgb",
    "stack_cameras",
    "to_uint8",
]
