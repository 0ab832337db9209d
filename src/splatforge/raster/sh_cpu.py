"""Spherical-harmonics colours as one Numba pass forward and one backward (the CPU backend's
replacement for evaluating `core.sh.eval_sh` with torch ops, which builds ~16 temporaries per
Gaussian and as many again in autograd).

`sh_colors(degree, dirs, coeffs)` equals `eval_sh(degree, dirs, coeffs)`: dirs [C, N, 3] need not
be unit length, coeffs [N, K, 3] are shared by the C cameras. The backward gives the coefficients'
gradient and the directions' (through the normalization), so positions learn from view-dependent
colour as in gsplat. Parallel over Gaussians, so each thread owns its rows: no atomics, and results
do not depend on the thread count.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from torch import Tensor

from ..core.parallel import serialized
from ..core.sh import C0, num_sh_bases
from .kernels_cpu import FASTMATH

A1 = 0.4886025119029199
B2, C2, D2 = 1.0925484305920792, 0.31539156525252005, 0.5462742152960396
E3, F3, G3, H3, I3 = 0.5900435899266435, 2.890611442640554, 0.4570457994644658, 0.3731763325901154, 1.445305721320277


@numba.njit(inline="always", fastmath=FASTMATH)
def _basis(x, y, z, k_count, out):
    out[0] = C0
    if k_count > 1:
        out[1] = -A1 * y
        out[2] = A1 * z
        out[3] = -A1 * x
    if k_count > 4:
        xx, yy, zz = x * x, y * y, z * z
        out[4] = B2 * x * y
        out[5] = -B2 * y * z
        out[6] = C2 * (2.0 * zz - xx - yy)
        out[7] = -B2 * x * z
        out[8] = D2 * (xx - yy)
        if k_count > 9:
            out[9] = -E3 * y * (3.0 * xx - yy)
            out[10] = F3 * x * y * z
            out[11] = -G3 * y * (4.0 * zz - xx - yy)
            out[12] = H3 * z * (2.0 * zz - 3.0 * xx - 3.0 * yy)
            out[13] = -G3 * x * (4.0 * zz - xx - yy)
            out[14] = I3 * z * (xx - yy)
            out[15] = -E3 * x * (xx - 3.0 * yy)


@numba.njit(inline="always", fastmath=FASTMATH)
def _basis_grad(x, y, z, k_count, w):
    """d/d(x, y, z) of sum_k w[k] basis_k at the unit direction (x, y, z)."""
    gx = gy = gz = 0.0
    if k_count > 1:
        gy -= A1 * w[1]
        gz += A1 * w[2]
        gx -= A1 * w[3]
    if k_count > 4:
        xx, yy, zz = x * x, y * y, z * z
        gx += B2 * y * w[4]
        gy += B2 * x * w[4]
        gy -= B2 * z * w[5]
        gz -= B2 * y * w[5]
        gx -= 2.0 * C2 * x * w[6]
        gy -= 2.0 * C2 * y * w[6]
        gz += 4.0 * C2 * z * w[6]
        gx -= B2 * z * w[7]
        gz -= B2 * x * w[7]
        gx += 2.0 * D2 * x * w[8]
        gy -= 2.0 * D2 * y * w[8]
        if k_count > 9:
            gx -= 6.0 * E3 * x * y * w[9]
            gy -= E3 * (3.0 * xx - 3.0 * yy) * w[9]
            gx += F3 * y * z * w[10]
            gy += F3 * x * z * w[10]
            gz += F3 * x * y * w[10]
            gx += 2.0 * G3 * x * y * w[11]
            gy -= G3 * (4.0 * zz - xx - 3.0 * yy) * w[11]
            gz -= 8.0 * G3 * y * z * w[11]
            gx -= 6.0 * H3 * x * z * w[12]
            gy -= 6.0 * H3 * y * z * w[12]
            gz += H3 * (6.0 * zz - 3.0 * xx - 3.0 * yy) * w[12]
            gx -= G3 * (4.0 * zz - 3.0 * xx - yy) * w[13]
            gy += 2.0 * G3 * x * y * w[13]
            gz -= 8.0 * G3 * x * z * w[13]
            gx += 2.0 * I3 * x * z * w[14]
            gy -= 2.0 * I3 * y * z * w[14]
            gz += I3 * (xx - yy) * w[14]
            gx -= E3 * (3.0 * xx - 3.0 * yy) * w[15]
            gy += 6.0 * E3 * x * y * w[15]
    return gx, gy, gz


@numba.njit(inline="always", fastmath=FASTMATH)
def _unit(dx, dy, dz):
    norm = np.sqrt(dx * dx + dy * dy + dz * dz)
    inv = 1.0 / norm if norm > 1e-12 else 0.0
    return dx * inv, dy * inv, dz * inv, inv


CHUNK = 256  # Gaussians per parallel task


@serialized
@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def sh_forward(dirs, coeffs, k_count):  # [C, N, 3], [N, K, 3] -> [C, N, 3]
    n_cams, n = dirs.shape[0], dirs.shape[1]
    out = np.empty((n_cams, n, 3), dtype=dirs.dtype)
    for task in numba.prange((n + CHUNK - 1) // CHUNK):
        basis = np.empty(16, dtype=np.float64)  # scratch per task: an allocation per Gaussian cost more than its work
        for i in range(task * CHUNK, min(task * CHUNK + CHUNK, n)):
            _forward_one(dirs, coeffs, k_count, i, n_cams, basis, out)
    return out


@numba.njit(inline="always", fastmath=FASTMATH)
def _forward_one(dirs, coeffs, k_count, i, n_cams, basis, out):
    for c in range(n_cams):
        x, y, z, _ = _unit(dirs[c, i, 0], dirs[c, i, 1], dirs[c, i, 2])
        _basis(x, y, z, k_count, basis)
        for ch in range(3):
            acc = 0.0
            for k in range(k_count):
                acc += basis[k] * coeffs[i, k, ch]
            out[c, i, ch] = acc


@serialized
@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def sh_backward(dirs, coeffs, k_count, v_out, need_dirs):  # -> v_dirs [C, N, 3], v_coeffs [N, K, 3]
    n_cams, n = dirs.shape[0], dirs.shape[1]
    v_coeffs = np.zeros(coeffs.shape, dtype=coeffs.dtype)
    v_dirs = np.zeros(dirs.shape if need_dirs else (0, 0, 3), dtype=dirs.dtype)
    for task in numba.prange((n + CHUNK - 1) // CHUNK):
        basis = np.empty(16, dtype=np.float64)
        w = np.empty(16, dtype=np.float64)
        for i in range(task * CHUNK, min(task * CHUNK + CHUNK, n)):
            _backward_one(dirs, coeffs, k_count, v_out, need_dirs, i, n_cams, basis, w, v_coeffs, v_dirs)
    return v_dirs, v_coeffs


@numba.njit(inline="always", fastmath=FASTMATH)
def _backward_one(dirs, coeffs, k_count, v_out, need_dirs, i, n_cams, basis, w, v_coeffs, v_dirs):
    for c in range(n_cams):
        x, y, z, inv = _unit(dirs[c, i, 0], dirs[c, i, 1], dirs[c, i, 2])
        _basis(x, y, z, k_count, basis)
        g0, g1, g2 = v_out[c, i, 0], v_out[c, i, 1], v_out[c, i, 2]
        for k in range(k_count):
            v_coeffs[i, k, 0] += basis[k] * g0
            v_coeffs[i, k, 1] += basis[k] * g1
            v_coeffs[i, k, 2] += basis[k] * g2
        if need_dirs and k_count > 1:
            for k in range(k_count):
                w[k] = coeffs[i, k, 0] * g0 + coeffs[i, k, 1] * g1 + coeffs[i, k, 2] * g2
            gx, gy, gz = _basis_grad(x, y, z, k_count, w)
            radial = gx * x + gy * y + gz * z  # d/d(unnormalized d) = (I - u u^T) g / |d|
            v_dirs[c, i, 0] = (gx - radial * x) * inv
            v_dirs[c, i, 1] = (gy - radial * y) * inv
            v_dirs[c, i, 2] = (gz - radial * z) * inv


class _SHColors(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dirs: Tensor, coeffs: Tensor, k_count: int) -> Tensor:
        d, co = dirs.detach().contiguous(), coeffs.detach().contiguous()
        ctx.save_for_backward(d, co)
        ctx.k_count = k_count
        return torch.from_numpy(sh_forward(d.numpy(), co.numpy(), k_count))

    @staticmethod
    def backward(ctx, v_out: Tensor):
        d, co = ctx.saved_tensors
        v_dirs, v_coeffs = sh_backward(d.numpy(), co.numpy(), ctx.k_count, v_out.contiguous().numpy(),
                                       ctx.needs_input_grad[0])
        return (torch.from_numpy(v_dirs) if ctx.needs_input_grad[0] else None,
                torch.from_numpy(v_coeffs) if ctx.needs_input_grad[1] else None, None)


def sh_colors(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """`eval_sh(degree, dirs, coeffs)` for dirs [C, N, 3] and coeffs [N, K, 3] (K >= (degree+1)^2)
    on CPU float32/float64 tensors; returns [C, N, 3]."""
    k = num_sh_bases(degree)
    if coeffs.shape[-2] < k:
        raise ValueError(f"degree {degree} needs {k} SH coefficients per channel, got {coeffs.shape[-2]}")
    if dirs.dim() != 3 or coeffs.dim() != 3 or dirs.shape[1] != coeffs.shape[0]:
        raise ValueError(f"sh_colors needs dirs [C, N, 3] and coeffs [N, K, 3], got {tuple(dirs.shape)} "
                         f"and {tuple(coeffs.shape)}")
    coeffs = coeffs.to(dirs.dtype)
    return _SHColors.apply(dirs, coeffs[:, :k], k)
