"""Projection of 3D Gaussians to screen space (EWA splatting), in vectorized PyTorch.

It is O(cameras x Gaussians) elementwise work, which PyTorch does well on a CPU, and autograd gives
its backward for free. Semantics follow gsplat 1.5.3's fused projection kernel: the same clamping of
the Jacobian at 1.3x the field of view, the same eps2d blur and antialiasing compensation, the same
opacity-aware radius (a Gaussian ends where its alpha drops below 1/255) and the same culling.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

ALPHA_THRESHOLD = 1.0 / 255.0
MAX_EXTEND = 3.33  # radius in standard deviations for Gaussians of opacity near 1, as gsplat


class Projection(NamedTuple):
    radii: Tensor  # [..., C, N, 2] int32, 0 where culled
    means2d: Tensor  # [..., C, N, 2] pixels
    depths: Tensor  # [..., C, N] camera-space z
    conics: Tensor  # [..., C, N, 3] upper triangle of the inverse 2D covariance (a, b, c)
    compensations: Optional[Tensor]  # [..., C, N] antialiasing opacity factor, or None


def quat_to_rotmat(quats: Tensor) -> Tensor:  # [..., 4] (w, x, y, z) -> [..., 3, 3]
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(quats.shape[:-1] + (3, 3))


def covariances(quats: Tensor, scales: Tensor) -> Tensor:  # [..., 4], [..., 3] -> [..., 3, 3]
    """World covariance R S S^T R^T of Gaussians with (unnormalized) quaternions and linear scales."""
    m = quat_to_rotmat(quats) * scales[..., None, :]
    return m @ m.transpose(-1, -2)


def _jacobian_pinhole(means_c: Tensor, Ks: Tensor, width: int, height: int):
    """Means and the affine Jacobian of the pinhole projection; the Jacobian is taken at a point
    clamped to 1.3x the field of view so that Gaussians far off-screen do not blow up."""
    x, y, z = means_c.unbind(-1)  # [..., C, N]
    fx, fy = Ks[..., 0, 0, None], Ks[..., 1, 1, None]  # [..., C, 1]
    cx, cy = Ks[..., 0, 2, None], Ks[..., 1, 2, None]
    lim_x_pos = (width - cx) / fx + 0.3 * (0.5 * width / fx)
    lim_x_neg = cx / fx + 0.3 * (0.5 * width / fx)
    lim_y_pos = (height - cy) / fy + 0.3 * (0.5 * height / fy)
    lim_y_neg = cy / fy + 0.3 * (0.5 * height / fy)
    tx = z * torch.clamp(x / z, min=-lim_x_neg, max=lim_x_pos)
    ty = z * torch.clamp(y / z, min=-lim_y_neg, max=lim_y_pos)
    zero = torch.zeros_like(z)
    jac = torch.stack([fx / z, zero, -fx * tx / (z * z), zero, fy / z, -fy * ty / (z * z)], dim=-1)
    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)
    return means2d, jac.reshape(z.shape + (2, 3))


def _jacobian_ortho(means_c: Tensor, Ks: Tensor):
    x, y, z = means_c.unbind(-1)
    fx, fy = Ks[..., 0, 0, None], Ks[..., 1, 1, None]
    cx, cy = Ks[..., 0, 2, None], Ks[..., 1, 2, None]
    zero = torch.zeros_like(z)
    jac = torch.stack([fx + zero, zero, zero, zero, fy + zero, zero], dim=-1)
    return torch.stack([fx * x + cx, fy * y + cy], dim=-1), jac.reshape(z.shape + (2, 3))


def _jacobian_fisheye(means_c: Tensor, Ks: Tensor):
    """Equidistant fisheye (r = f * theta), as gsplat's fisheye camera model."""
    x, y, z = means_c.unbind(-1)
    fx, fy = Ks[..., 0, 0, None], Ks[..., 1, 1, None]
    cx, cy = Ks[..., 0, 2, None], Ks[..., 1, 2, None]
    eps = 1e-7
    xy_len = torch.sqrt(x * x + y * y) + eps
    theta = torch.atan2(xy_len, z + eps)
    means2d = torch.stack([x * fx * theta / xy_len + cx, y * fy * theta / xy_len + cy], dim=-1)
    x2, y2, xy = x * x + eps, y * y, x * y
    r2 = x2 + y2
    inv_len2 = 1.0 / (r2 + z * z)
    b = torch.atan2(xy_len, z) / xy_len / r2
    a = z * inv_len2 / r2
    jac = torch.stack(
        [fx * (x2 * a + y2 * b), fx * xy * (a - b), -fx * x * inv_len2,
         fy * xy * (a - b), fy * (y2 * a + x2 * b), -fy * y * inv_len2],
        dim=-1,
    )
    return means2d, jac.reshape(z.shape + (2, 3))


def project_gaussians(
    means: Tensor,  # [..., N, 3]
    covars: Tensor,  # [..., N, 3, 3] world covariances
    viewmats: Tensor,  # [..., C, 4, 4] world-to-camera
    Ks: Tensor,  # [..., C, 3, 3]
    width: int,
    height: int,
    opacities: Optional[Tensor] = None,  # [..., N], tightens radii as gsplat does
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    calc_compensations: bool = False,
    camera_model: str = "pinhole",
) -> Projection:
    """Project Gaussians into each camera: 2D means, conics, depths and integer pixel radii."""
    rot = viewmats[..., :3, :3]  # [..., C, 3, 3]
    trans = viewmats[..., :3, 3]  # [..., C, 3]
    means_c = torch.einsum("...cij,...nj->...cni", rot, means) + trans[..., None, :]  # [..., C, N, 3]
    depths = means_c[..., 2]
    depth_ok = (depths > near_plane) & (depths < far_plane)
    if camera_model == "pinhole":
        # Gaussians at or behind the camera plane are culled; a safe z keeps their (unused) values
        # and, above all, their gradients finite.
        safe = means_c.detach().clone()
        safe[..., 2] = 1.0
        means_c_safe = torch.where(depth_ok[..., None], means_c, safe)
        means2d, jac = _jacobian_pinhole(means_c_safe, Ks, width, height)
    elif camera_model == "ortho":
        means2d, jac = _jacobian_ortho(means_c, Ks)
    elif camera_model == "fisheye":
        means2d, jac = _jacobian_fisheye(means_c, Ks)
    else:
        raise ValueError(f"camera_model must be 'pinhole', 'ortho' or 'fisheye', got {camera_model!r}")

    # covariance in camera space, then through the Jacobian: J R Sigma R^T J^T
    jw = jac @ rot[..., None, :, :]  # [..., C, N, 2, 3]
    cov2d = jw @ covars[..., None, :, :, :] @ jw.transpose(-1, -2)  # [..., C, N, 2, 2]
    a, b, c = cov2d[..., 0, 0], 0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0]), cov2d[..., 1, 1]
    det_orig = a * c - b * b
    a, c = a + eps2d, c + eps2d
    det = a * c - b * b
    det_ok = det > 0
    det_safe = torch.where(det_ok, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)
    compensations = None
    if calc_compensations:
        compensations = torch.sqrt(torch.clamp(det_orig / det_safe, min=0.0))

    with torch.no_grad():
        valid = depth_ok & det_ok
        extend = torch.full_like(depths, MAX_EXTEND)
        if opacities is not None:
            opac = opacities[..., None, :].expand_as(depths)
            if compensations is not None:
                opac = opac * compensations
            valid &= opac >= ALPHA_THRESHOLD
            extend = torch.clamp(
                torch.sqrt(2.0 * torch.log(torch.clamp(opac, min=ALPHA_THRESHOLD) / ALPHA_THRESHOLD)),
                max=MAX_EXTEND,
            )
        rx = torch.ceil(extend * torch.sqrt(torch.clamp(a, min=0.0)))
        ry = torch.ceil(extend * torch.sqrt(torch.clamp(c, min=0.0)))
        valid &= ~((rx <= radius_clip) & (ry <= radius_clip))
        mx, my = means2d[..., 0], means2d[..., 1]
        valid &= (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
        radii = torch.where(valid[..., None], torch.stack([rx, ry], dim=-1), 0.0).to(torch.int32)
    return Projection(radii, means2d, depths, conics, compensations)
