"""Real spherical harmonics up to degree 3, in the basis and sign convention of INRIA 3DGS and gsplat.

Colours are stored as SH coefficients per channel; the colour seen along a unit direction d is
``sum_k basis_k(d) * coeffs_k``, and the renderer adds 0.5 (so coefficient 0 equal to zero is grey).
"""

from __future__ import annotations

import torch
from torch import Tensor

C0 = 0.28209479177387814
MAX_SH_DEGREE = 3


def num_sh_bases(degree: int) -> int:
    """Number of SH coefficients per channel for a degree: 1, 4, 9 or 16."""
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"sh_degree must be 0..{MAX_SH_DEGREE}, got {degree}")
    return (degree + 1) ** 2


def sh_degree_from_bases(num_bases: int) -> int:
    """Inverse of `num_sh_bases`; raises ValueError for counts that are not (d+1)^2 with d <= 3."""
    for degree in range(MAX_SH_DEGREE + 1):
        if (degree + 1) ** 2 == num_bases:
            return degree
    raise ValueError(f"{num_bases} SH coefficients per channel is not (d+1)^2 for a degree d in 0..3")


def rgb_to_sh(rgb: Tensor) -> Tensor:
    """Degree-0 coefficient whose rendered colour is `rgb` (the renderer adds 0.5)."""
    return (rgb - 0.5) / C0


def sh_to_rgb(sh0: Tensor) -> Tensor:
    return sh0 * C0 + 0.5


def sh_basis(degree: int, dirs: Tensor) -> Tensor:
    """The (degree+1)^2 real SH basis functions at unit directions `dirs` [..., 3] -> [..., K]."""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, C0)]
    if degree >= 1:
        out += [-0.4886025119029199 * y, 0.4886025119029199 * z, -0.4886025119029199 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [
            1.0925484305920792 * x * y,
            -1.0925484305920792 * y * z,
            0.31539156525252005 * (2.0 * zz - xx - yy),
            -1.0925484305920792 * x * z,
            0.5462742152960396 * (xx - yy),
        ]
    if degree >= 3:
        out += [
            -0.5900435899266435 * y * (3.0 * xx - yy),
            2.890611442640554 * x * y * z,
            -0.4570457994644658 * y * (4.0 * zz - xx - yy),
            0.3731763325901154 * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
            -0.4570457994644658 * x * (4.0 * zz - xx - yy),
            1.445305721320277 * z * (xx - yy),
            -0.5900435899266435 * x * (xx - 3.0 * yy),
        ]
    return torch.stack(out, dim=-1)


def eval_sh(
    degree: int,
    dirs: Tensor,  # [..., 3], need not be normalized
    coeffs: Tensor,  # [..., K, 3] with K >= (degree+1)^2
) -> Tensor:  # [..., 3]
    """Colour (before the +0.5 offset) of SH `coeffs` seen along `dirs`; only the first
    (degree+1)^2 coefficients are used, so a scene can be rendered at a lower degree than stored."""
    k = num_sh_bases(degree)
    if coeffs.shape[-2] < k:
        raise ValueError(f"degree {degree} needs {k} SH coefficients per channel, got {coeffs.shape[-2]}")
    dirs = torch.nn.functional.normalize(dirs, dim=-1)
    basis = sh_basis(degree, dirs)  # [..., k]
    return (basis[..., None] * coeffs[..., :k, :]).sum(dim=-2)
