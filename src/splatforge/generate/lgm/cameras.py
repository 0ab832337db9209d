"""LGM's cameras and the network's input tensor.

LGM's world is y-up (OpenGL). Its orbit camera at elevation e and azimuth a sits at
r * (cos e sin a, -sin e, cos e cos a), looking at the origin: azimuth 0 looks down -z from +z,
azimuth 90 from +x. The four input views are azimuths 0, 90, 180, 270 at elevation 0, radius
`cam_radius` (1.5) and vertical field of view `fovy` (49.1 degrees). Each input pixel carries the
Plücker coordinates (o x d, d) of its ray through the pixel centre, in world coordinates.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .model import LGMConfig

INPUT_AZIMUTHS = (0.0, 90.0, 180.0, 270.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def orbit_camera_to_world(elevation: float, azimuth: float, radius: float) -> Tensor:  # [4, 4]
    """LGM's camera-to-world matrix (OpenGL axes: x right, y up, camera looks along -z)."""
    e, a = math.radians(elevation), math.radians(azimuth)
    eye = np.array([radius * math.cos(e) * math.sin(a), -radius * math.sin(e),
                    radius * math.cos(e) * math.cos(a)])
    backward = eye / np.linalg.norm(eye)
    right = np.cross([0.0, 1.0, 0.0], backward)
    right /= np.linalg.norm(right)
    up = np.cross(backward, right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, up, backward], axis=1)
    pose[:3, 3] = eye
    return torch.from_numpy(pose).float()


def opencv_viewmat(camera_to_world_gl: Tensor) -> Tensor:  # [..., 4, 4] -> [..., 4, 4]
    """World-to-camera in splatforge's OpenCV convention (y down, z forward) for an OpenGL
    camera-to-world, as LGM does before rasterizing (negate the up and backward axes)."""
    c2w = camera_to_world_gl.clone().double()
    c2w[..., :3, 1:3] *= -1
    return torch.linalg.inv(c2w).float()


def plucker_rays(camera_to_world: Tensor, size: int, fovy: float) -> Tensor:  # [4, 4] -> [6, size, size]
    """(o x d, d) per pixel centre of a square image, d the unit ray direction (OpenGL camera)."""
    focal = size * 0.5 / math.tan(math.radians(fovy) / 2)
    centres = (torch.arange(size, dtype=torch.float32) + 0.5 - size * 0.5) / focal
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    dirs = torch.stack([x, -y, -torch.ones_like(x)], dim=-1) @ camera_to_world[:3, :3].T
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    origins = camera_to_world[:3, 3].expand_as(dirs)
    return torch.cat([torch.linalg.cross(origins, dirs, dim=-1), dirs], dim=-1).permute(2, 0, 1)


def input_rays(config: LGMConfig, elevation: float = 0.0) -> Tensor:  # [4, 6, S, S]
    """The Plücker embeddings of LGM's four input cameras."""
    return torch.stack([plucker_rays(orbit_camera_to_world(elevation, a, config.cam_radius),
                                     config.input_size, config.fovy) for a in INPUT_AZIMUTHS])


def network_input(views: np.ndarray | Tensor, config: LGMConfig) -> Tensor:  # [4, H, W, 3] -> [1, 4, 9, S, S]
    """Four RGB views in [0, 1] (azimuths 0, 90, 180, 270) -> the network's input: resized
    bilinearly to the input size, ImageNet-normalised, with the Plücker channels appended."""
    rgb = torch.as_tensor(np.ascontiguousarray(views) if isinstance(views, np.ndarray) else views)
    rgb = rgb.float().permute(0, 3, 1, 2)
    size = config.input_size
    if rgb.shape[-2:] != (size, size):
        rgb = torch.nn.functional.interpolate(rgb, size=(size, size), mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return torch.cat([(rgb - mean) / std, input_rays(config)], dim=1)[None]
