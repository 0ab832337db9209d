"""The bottom layer: the Gaussians container, cameras, image loading and spherical harmonics.

Attributes are imported on first use: `splatforge.core.images` alone does not load torch.
"""

from splatforge._lazy import lazy_exports

_WHERE = {
    **dict.fromkeys(["Camera", "camera_center", "focal_to_fov", "fov_to_focal", "intrinsics_from_focal",
                     "intrinsics_from_fov", "look_at", "orbit_path", "project_points", "stack_cameras"],
                    ".cameras"),
    "Gaussians": ".gaussians",
    **dict.fromkeys(["DEFAULT_MAX_PIXELS", "load_image", "load_image_bytes", "save_image", "to_uint8"], ".images"),
    "nearest_neighbors": ".knn",
    **dict.fromkeys(["C0", "eval_sh", "num_sh_bases", "rgb_to_sh", "sh_to_rgb"], ".sh"),
}
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)

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
