"""The camera conditioning of ImageDream: one flattened 4x4 camera-to-world matrix per view."""

from __future__ import annotations

import numpy as np


def orbit_pose(elevation: float, azimuth: float, radius: float = 1.0) -> np.ndarray:  # [4, 4]
    """Camera-to-world matrix (OpenGL axes: x right, y up, looking down -z) of a camera on a
    sphere around the origin, looking at it. Degrees; azimuth 0 is on +z, 90 on +x; positive
    elevation is above (y < 0 in this frame, as kiui's `orbit_camera` that ImageDream uses)."""
    el, az = np.deg2rad(elevation), np.deg2rad(azimuth)
    position = radius * np.array([np.cos(el) * np.sin(az), -np.sin(el), np.cos(el) * np.cos(az)])
    forward = position / np.linalg.norm(position)  # target -> camera: the camera's +z
    right = np.cross([0.0, 1.0, 0.0], forward)
    right /= np.linalg.norm(right)
    up = np.cross(forward, right)
    up /= np.linalg.norm(up)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, up, forward], axis=1)
    pose[:3, 3] = position
    return pose


def view_cameras(num_views: int = 4, elevation: float = 0.0, extra_view: bool = True
                 ) -> np.ndarray:  # [num_views (+1), 16] float32
    """The U-Net's camera input: views at azimuths 0, 360/num_views, ... in Blender axes (the
    OpenGL pose with y and z swapped and z negated), flattened row-major; `extra_view` appends
    the all-zero camera of the image-prompt view."""
    cameras = []
    for azimuth in np.arange(num_views) * (360.0 / num_views):
        pose = orbit_pose(elevation, azimuth)
        pose[2] *= -1
        pose[[1, 2]] = pose[[2, 1]]
        cameras.append(pose.reshape(-1))
    if extra_view:
        cameras.append(np.zeros(16))
    return np.stack(cameras).astype(np.float32)
