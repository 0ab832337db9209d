"""From the network's normalized camera space to metric OpenCV camera coordinates, vectorized.

An affine map x -> L x + t moves a Gaussian's mean to L mean + t and its covariance
R S^2 R^T to L R S^2 R^T L^T, which must then be split again into a rotation and scales.
ml-sharp does that with a float64 SVD of every 3x3 matrix (seconds for 1.18M Gaussians); here the
symmetric eigenproblem is solved in closed form on whole tensors:

1. the eigenvalues from the characteristic cubic (trigonometric form);
2. the eigenvector of whichever extreme eigenvalue is better separated from the middle one, as
   the longest cross product of two rows of C - lambda I (well conditioned: that gap is at least
   half the spread);
3. the other two from the 2x2 problem in the plane orthogonal to it, by one Jacobi rotation
   (exact, any degeneracy allowed);
4. eigenvalues as Rayleigh quotients, sorted descending like the SVD's, columns made a proper
   rotation, then a quaternion by Shepperd's method with w >= 0.

`transform_gaussians` does this on whole torch tensors (the reference; it also runs on GPU
tensors); `transform_gaussians_cpu`, which the pipeline uses, does the same per Gaussian in one
parallel Numba pass: 1,179,648 Gaussians in ~0.3 CPU-seconds instead of 5-9
(benchmarks/predict_unproject.py).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from torch import Tensor

from splatforge.core.parallel import serialized
from splatforge.raster.project_cpu import quat_rotation, world_covariance


def quaternions_to_matrices(quats: Tensor) -> Tensor:  # [N, 4] (w, x, y, z) -> [N, 3, 3]
    q = quats / torch.linalg.norm(quats, dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(q.shape[:-1] + (3, 3))


def matrices_to_quaternions(m: Tensor) -> Tensor:  # [N, 3, 3] rotations -> [N, 4], w >= 0
    cols = [tuple(m[:, i, j] for i in range(3)) for j in range(3)]
    return _rotation_to_quaternion(*cols)


def covariances(quats: Tensor, scales: Tensor) -> Tensor:  # [N, 4], [N, 3] -> [N, 3, 3]
    r = quaternions_to_matrices(quats)
    return (r * scales.square()[..., None, :]) @ r.transpose(-1, -2)


# The decomposition works on tuples of [N] tensors (one per matrix entry or vector component):
# elementwise arithmetic on contiguous 1-D tensors is several times faster than the same maths
# on [N, 3, 3] stacks with batched det/matmul/gather.
Vec = tuple[Tensor, Tensor, Tensor]


def _dot(a: Vec, b: Vec) -> Tensor:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cross(a: Vec, b: Vec) -> Vec:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _scaled(a: Vec, k: Tensor) -> Vec:
    return (a[0] * k, a[1] * k, a[2] * k)


def _unit(a: Vec) -> Vec:
    return _scaled(a, torch.rsqrt(_dot(a, a).clamp_min(1e-300)))


def _select(mask: Tensor, a: Vec, b: Vec) -> Vec:
    return tuple(torch.where(mask, x, y) for x, y in zip(a, b))  # type: ignore[return-value]


def symmetric_eigen_3x3(c: Tensor) -> tuple[Tensor, Tensor]:
    """Eigen-decomposition of symmetric [N, 3, 3] matrices: (values [N, 3] descending,
    vectors [N, 3, 3] as columns, a proper rotation). Closed form, no per-matrix loop."""
    entries = c.reshape(-1, 9).T.contiguous()
    a00, a01, a02, _, a11, a12, _, _, a22 = entries.unbind(0)
    values, (v1, v2, v3) = _eigen_sym(a00, a01, a02, a11, a12, a22)
    vectors = torch.stack([torch.stack(v1, -1), torch.stack(v2, -1), torch.stack(v3, -1)], -1)
    return values, vectors


def _eigen_sym(a00: Tensor, a01: Tensor, a02: Tensor, a11: Tensor, a12: Tensor,
               a22: Tensor) -> tuple[Tensor, tuple[Vec, Vec, Vec]]:
    q = (a00 + a11 + a22) / 3
    d0, d1, d2 = a00 - q, a11 - q, a22 - q
    off = a01 * a01 + a02 * a02 + a12 * a12
    p = torch.sqrt((d0 * d0 + d1 * d1 + d2 * d2 + 2 * off) / 6)
    inv_p = torch.where(p > 0, 1 / p, torch.zeros_like(p))
    b00, b11, b22, b01, b02, b12 = d0 * inv_p, d1 * inv_p, d2 * inv_p, a01 * inv_p, a02 * inv_p, a12 * inv_p
    det_b = (b00 * (b11 * b22 - b12 * b12) - b01 * (b01 * b22 - b12 * b02)
             + b02 * (b01 * b12 - b11 * b02))
    phi = torch.acos((det_b / 2).clamp(-1, 1)) / 3
    lam1 = q + 2 * p * torch.cos(phi)
    lam3 = q + 2 * p * torch.cos(phi + 2 * math.pi / 3)
    lam2 = 3 * q - lam1 - lam3

    top_is_anchor = (lam1 - lam2) >= (lam2 - lam3)
    lam = torch.where(top_is_anchor, lam1, lam3)
    r0: Vec = (a00 - lam, a01, a02)
    r1: Vec = (a01, a11 - lam, a12)
    r2: Vec = (a02, a12, a22 - lam)
    c01, c02, c12 = _cross(r0, r1), _cross(r0, r2), _cross(r1, r2)
    n01, n02, n12 = _dot(c01, c01), _dot(c02, c02), _dot(c12, c12)
    anchor = _select(n02 > n01, c02, c01)
    best = torch.maximum(n01, n02)
    anchor = _select(n12 > best, c12, anchor)
    best = torch.maximum(best, n12)
    zero = torch.zeros_like(a00)
    anchor = _select(best <= 1e-60, (torch.ones_like(a00), zero, zero), anchor)  # isotropic
    anchor = _unit(anchor)

    # Orthonormal basis (u, w) of the plane orthogonal to the anchor: cross with the axis the
    # anchor is least aligned with.
    ax, ay, az = (t.abs() for t in anchor)
    use_x = (ax <= ay) & (ax <= az)
    use_y = ~use_x & (ay <= az)
    one = torch.ones_like(a00)
    axis = (torch.where(use_x, one, zero), torch.where(use_y, one, zero),
            torch.where(use_x | use_y, zero, one))
    u = _unit(_cross(anchor, axis))
    w = _cross(anchor, u)

    def apply(v: Vec) -> Vec:
        return (a00 * v[0] + a01 * v[1] + a02 * v[2], a01 * v[0] + a11 * v[1] + a12 * v[2],
                a02 * v[0] + a12 * v[1] + a22 * v[2])

    cu, cw = apply(u), apply(w)
    theta = 0.5 * torch.atan2(2 * _dot(u, cw), _dot(u, cu) - _dot(w, cw))
    cos, sin = torch.cos(theta), torch.sin(theta)
    e_big = tuple(cos * x + sin * y for x, y in zip(u, w))
    e_small = tuple(cos * y - sin * x for x, y in zip(u, w))

    v1 = _select(top_is_anchor, anchor, e_big)
    v2 = _select(top_is_anchor, e_big, e_small)
    v3 = _cross(v1, v2)  # right-handed: the SVD's reflection fix, built in
    # Rayleigh quotients are more accurate than the cubic's roots. By construction they come
    # out descending; near-equal values may swap by rounding, which changes nothing.
    values = torch.stack([_dot(v, apply(v)) for v in (v1, v2, v3)], -1)
    return values, (v1, v2, v3)


CHUNK = 1 << 14


def transform_gaussians(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3] standard deviations (not log)
    linear: Tensor,  # [3, 3]
    offset: Tensor,  # [3]
) -> tuple[Tensor, Tensor, Tensor]:
    """Apply x -> linear @ x + offset; returns (means, quats (w >= 0), scales, largest first)."""
    assert means.ndim == 2 and means.shape[1] == 3, f"means must be [N, 3], got {tuple(means.shape)}"
    assert quats.shape == (means.shape[0], 4), f"quats must be [N, 4], got {tuple(quats.shape)}"
    assert scales.shape == means.shape, f"scales must be [N, 3], got {tuple(scales.shape)}"
    dtype = means.dtype
    lin = linear.to(torch.float64)
    new_means = (means.to(torch.float64) @ lin.T + offset.to(torch.float64)).to(dtype)
    new_quats = torch.empty_like(quats, dtype=dtype)
    new_scales = torch.empty_like(scales, dtype=dtype)
    # The same vectorized maths on blocks of CHUNK Gaussians: the ~400 elementwise passes then
    # stay in cache instead of streaming 1.18M-element float64 temporaries through memory (4x).
    for start in range(0, means.shape[0], CHUNK):
        block = slice(start, start + CHUNK)
        new_quats[block], new_scales[block] = _transform_covariances(quats[block], scales[block],
                                                                     lin)
    return new_means, new_quats, new_scales


def _transform_covariances(quats: Tensor, scales: Tensor, lin: Tensor) -> tuple[Tensor, Tensor]:

    qw, qx, qy, qz = quats.to(torch.float64).T.contiguous().unbind(0)
    inv = torch.rsqrt(qw * qw + qx * qx + qy * qy + qz * qz)
    qw, qx, qy, qz = qw * inv, qx * inv, qy * inv, qz * inv
    rot = [[1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qw * qz), 2 * (qx * qz + qw * qy)],
           [2 * (qx * qy + qw * qz), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qw * qx)],
           [2 * (qx * qz - qw * qy), 2 * (qy * qz + qw * qx), 1 - 2 * (qx * qx + qy * qy)]]
    var = scales.to(torch.float64).square().T.contiguous().unbind(0)
    lin_l = lin.tolist()
    # M = linear @ R; covariance = M diag(var) M^T.
    m = [[sum(lin_l[i][k] * rot[k][j] for k in range(3) if lin_l[i][k] != 0.0) for j in range(3)]
         for i in range(3)]

    def cov(i: int, j: int) -> Tensor:
        return m[i][0] * m[j][0] * var[0] + m[i][1] * m[j][1] * var[1] + m[i][2] * m[j][2] * var[2]

    values, (v1, v2, v3) = _eigen_sym(cov(0, 0), cov(0, 1), cov(0, 2), cov(1, 1), cov(1, 2),
                                      cov(2, 2))
    return _rotation_to_quaternion(v1, v2, v3), values.clamp_min(0).sqrt()


def _rotation_to_quaternion(c0: Vec, c1: Vec, c2: Vec) -> Tensor:  # columns -> [N, 4], w >= 0
    m00, m10, m20 = c0
    m01, m11, m21 = c1
    m02, m12, m22 = c2
    t0 = 1 + m00 + m11 + m22
    t1 = 1 + m00 - m11 - m22
    t2 = 1 - m00 + m11 - m22
    t3 = 1 - m00 - m11 + m22
    # Shepperd: build the quaternion from whichever of 4w^2, 4x^2, 4y^2, 4z^2 is largest.
    cands = [(t0, m21 - m12, m02 - m20, m10 - m01), (m21 - m12, t1, m01 + m10, m02 + m20),
             (m02 - m20, m01 + m10, t2, m12 + m21), (m10 - m01, m02 + m20, m12 + m21, t3)]
    best = torch.stack([t0, t1, t2, t3], -1).argmax(-1)
    q = torch.stack([torch.where(best == 0, cands[0][k],
                                 torch.where(best == 1, cands[1][k],
                                             torch.where(best == 2, cands[2][k], cands[3][k])))
                     for k in range(4)], -1)
    q = q * torch.rsqrt((q * q).sum(-1, keepdim=True))
    return torch.where(q[:, :1] < 0, -q, q)


def unprojection_matrix(focal_length_px: float, image_size: tuple[int, int],
                        internal_size: int) -> Tensor:
    """The 3x3 map from the network's normalized space to metric camera coordinates.

    This is ml-sharp's inverse(NDC @ K_resized) with identity extrinsics; the principal point
    at the image centre cancels, leaving x * W / (2 f), y * H / (2 f), z.
    """
    width, height = image_size
    k = torch.tensor([[focal_length_px * internal_size / width, 0.0, internal_size / 2],
                      [0.0, focal_length_px * internal_size / height, internal_size / 2],
                      [0.0, 0.0, 1.0]], dtype=torch.float64)
    ndc = torch.tensor([[2.0 / internal_size, 0.0, -1.0], [0.0, 2.0 / internal_size, -1.0],
                        [0.0, 0.0, 1.0]], dtype=torch.float64)
    return torch.linalg.inv(ndc @ k)


# ------------------------------------------------------------------------------ Numba kernel
# The same closed form per Gaussian in float64 registers: one pass, no temporaries, every core.
# `transform_gaussians` above stays the reference the tests hold this to.


@numba.njit(cache=True, inline="always")
def _unit3(x, y, z):
    inv = 1.0 / math.sqrt(max(x * x + y * y + z * z, 1e-300))
    return x * inv, y * inv, z * inv


@numba.njit(cache=True, inline="always")
def _cross3(a0, a1, a2, b0, b1, b2):
    return a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0


@numba.njit(cache=True, inline="always")
def _sym_apply(s, x, y, z):  # symmetric 6-tuple (xx, xy, xz, yy, yz, zz) times a vector
    return (s[0] * x + s[1] * y + s[2] * z, s[1] * x + s[3] * y + s[4] * z,
            s[2] * x + s[4] * y + s[5] * z)


@numba.njit(cache=True, inline="always")
def _eigen_sym_scalar(s):
    """`_eigen_sym` for one matrix: (values descending, columns v1, v2, v3 a proper rotation)."""
    a00, a01, a02, a11, a12, a22 = s
    q = (a00 + a11 + a22) / 3.0
    d0, d1, d2 = a00 - q, a11 - q, a22 - q
    off = a01 * a01 + a02 * a02 + a12 * a12
    p = math.sqrt((d0 * d0 + d1 * d1 + d2 * d2 + 2.0 * off) / 6.0)
    inv_p = 1.0 / p if p > 0.0 else 0.0
    b00, b11, b22, b01, b02, b12 = d0 * inv_p, d1 * inv_p, d2 * inv_p, a01 * inv_p, a02 * inv_p, a12 * inv_p
    det_b = (b00 * (b11 * b22 - b12 * b12) - b01 * (b01 * b22 - b12 * b02)
             + b02 * (b01 * b12 - b11 * b02))
    phi = math.acos(min(max(det_b / 2.0, -1.0), 1.0)) / 3.0
    lam1 = q + 2.0 * p * math.cos(phi)
    lam3 = q + 2.0 * p * math.cos(phi + 2.0 * math.pi / 3.0)
    lam2 = 3.0 * q - lam1 - lam3
    top = (lam1 - lam2) >= (lam2 - lam3)
    lam = lam1 if top else lam3
    c01 = _cross3(a00 - lam, a01, a02, a01, a11 - lam, a12)
    c02 = _cross3(a00 - lam, a01, a02, a02, a12, a22 - lam)
    c12 = _cross3(a01, a11 - lam, a12, a02, a12, a22 - lam)
    n01 = c01[0] * c01[0] + c01[1] * c01[1] + c01[2] * c01[2]
    n02 = c02[0] * c02[0] + c02[1] * c02[1] + c02[2] * c02[2]
    n12 = c12[0] * c12[0] + c12[1] * c12[1] + c12[2] * c12[2]
    anchor, best = c01, n01
    if n02 > best:
        anchor, best = c02, n02
    if n12 > best:
        anchor, best = c12, n12
    if best <= 1e-60:  # isotropic
        anchor = (1.0, 0.0, 0.0)
    ax, ay, az = _unit3(anchor[0], anchor[1], anchor[2])
    # The plane orthogonal to the anchor: cross with the axis it is least aligned with.
    bx, by, bz = abs(ax), abs(ay), abs(az)
    if bx <= by and bx <= bz:
        ux, uy, uz = _unit3(0.0, az, -ay)
    elif by <= bz:
        ux, uy, uz = _unit3(-az, 0.0, ax)
    else:
        ux, uy, uz = _unit3(ay, -ax, 0.0)
    wx, wy, wz = _cross3(ax, ay, az, ux, uy, uz)
    cu = _sym_apply(s, ux, uy, uz)
    cw = _sym_apply(s, wx, wy, wz)
    theta = 0.5 * math.atan2(2.0 * (ux * cw[0] + uy * cw[1] + uz * cw[2]),
                             (ux * cu[0] + uy * cu[1] + uz * cu[2]) - (wx * cw[0] + wy * cw[1] + wz * cw[2]))
    cos, sin = math.cos(theta), math.sin(theta)
    big = (cos * ux + sin * wx, cos * uy + sin * wy, cos * uz + sin * wz)
    small = (cos * wx - sin * ux, cos * wy - sin * uy, cos * wz - sin * uz)
    v1 = (ax, ay, az) if top else big
    v2 = big if top else small
    v3 = _cross3(v1[0], v1[1], v1[2], v2[0], v2[1], v2[2])
    # Rayleigh quotients, as in `_eigen_sym`.
    c1 = _sym_apply(s, v1[0], v1[1], v1[2])
    c2 = _sym_apply(s, v2[0], v2[1], v2[2])
    c3 = _sym_apply(s, v3[0], v3[1], v3[2])
    values = (v1[0] * c1[0] + v1[1] * c1[1] + v1[2] * c1[2],
              v2[0] * c2[0] + v2[1] * c2[1] + v2[2] * c2[2],
              v3[0] * c3[0] + v3[1] * c3[1] + v3[2] * c3[2])
    return values, v1, v2, v3


@numba.njit(cache=True, inline="always")
def _columns_to_quaternion(c0, c1, c2):
    """Shepperd's method as `_rotation_to_quaternion`, for one rotation: (w, x, y, z), w >= 0."""
    m00, m10, m20 = c0
    m01, m11, m21 = c1
    m02, m12, m22 = c2
    t0 = 1.0 + m00 + m11 + m22
    t1 = 1.0 + m00 - m11 - m22
    t2 = 1.0 - m00 + m11 - m22
    t3 = 1.0 - m00 - m11 + m22
    if t0 >= t1 and t0 >= t2 and t0 >= t3:
        w, x, y, z = t0, m21 - m12, m02 - m20, m10 - m01
    elif t1 >= t2 and t1 >= t3:
        w, x, y, z = m21 - m12, t1, m01 + m10, m02 + m20
    elif t2 >= t3:
        w, x, y, z = m02 - m20, m01 + m10, t2, m12 + m21
    else:
        w, x, y, z = m10 - m01, m02 + m20, m12 + m21, t3
    inv = 1.0 / math.sqrt(w * w + x * x + y * y + z * z)
    if w < 0.0:
        inv = -inv
    return w * inv, x * inv, y * inv, z * inv


@numba.njit(cache=True, error_model="numpy")
def _transform_one(lin, qw, qx, qy, qz, sx, sy, sz):
    """One Gaussian's covariance L R diag(s^2) R^T L^T split again: (quaternion, scales)."""
    _, _, _, _, _, rot = quat_rotation(qw, qx, qy, qz)
    lr = (lin[0, 0] * rot[0] + lin[0, 1] * rot[3] + lin[0, 2] * rot[6],
          lin[0, 0] * rot[1] + lin[0, 1] * rot[4] + lin[0, 2] * rot[7],
          lin[0, 0] * rot[2] + lin[0, 1] * rot[5] + lin[0, 2] * rot[8],
          lin[1, 0] * rot[0] + lin[1, 1] * rot[3] + lin[1, 2] * rot[6],
          lin[1, 0] * rot[1] + lin[1, 1] * rot[4] + lin[1, 2] * rot[7],
          lin[1, 0] * rot[2] + lin[1, 1] * rot[5] + lin[1, 2] * rot[8],
          lin[2, 0] * rot[0] + lin[2, 1] * rot[3] + lin[2, 2] * rot[6],
          lin[2, 0] * rot[1] + lin[2, 1] * rot[4] + lin[2, 2] * rot[7],
          lin[2, 0] * rot[2] + lin[2, 1] * rot[5] + lin[2, 2] * rot[8])
    _, sigma = world_covariance(lr, sx, sy, sz)
    values, v1, v2, v3 = _eigen_sym_scalar(sigma)
    scales = (math.sqrt(max(values[0], 0.0)), math.sqrt(max(values[1], 0.0)),
              math.sqrt(max(values[2], 0.0)))
    return _columns_to_quaternion(v1, v2, v3), scales


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _transform_kernel(means, quats, scales, lin, offset, out_means, out_quats, out_scales):
    # The per-Gaussian body is its own (not IR-inlined) function: inlined, Numba's parfor array
    # analysis trips over the tuples (an internal "Dimension mismatch" assertion).
    for i in numba.prange(means.shape[0]):
        mx, my, mz = np.float64(means[i, 0]), np.float64(means[i, 1]), np.float64(means[i, 2])
        for r in range(3):
            out_means[i, r] = lin[r, 0] * mx + lin[r, 1] * my + lin[r, 2] * mz + offset[r]
        q, s = _transform_one(lin, np.float64(quats[i, 0]), np.float64(quats[i, 1]),
                              np.float64(quats[i, 2]), np.float64(quats[i, 3]),
                              np.float64(scales[i, 0]), np.float64(scales[i, 1]),
                              np.float64(scales[i, 2]))
        for k in range(4):
            out_quats[i, k] = q[k]
        for k in range(3):
            out_scales[i, k] = s[k]


_transform_kernel_serialized = serialized(_transform_kernel)


def transform_gaussians_cpu(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3] standard deviations (not log)
    linear: Tensor,  # [3, 3]
    offset: Tensor,  # [3]
) -> tuple[Tensor, Tensor, Tensor]:
    """`transform_gaussians` as one Numba pass on the CPU (same arguments, same results to
    rounding); CPU tensors in, CPU tensors out, in `means`' dtype."""
    assert means.ndim == 2 and means.shape[1] == 3, f"means must be [N, 3], got {tuple(means.shape)}"
    assert quats.shape == (means.shape[0], 4), f"quats must be [N, 4], got {tuple(quats.shape)}"
    assert scales.shape == means.shape, f"scales must be [N, 3], got {tuple(scales.shape)}"
    dtype = means.dtype
    arrays = [t.detach().cpu().contiguous().numpy() for t in (means, quats, scales)]
    out = [np.empty(a.shape, dtype=arrays[0].dtype) for a in arrays]
    _transform_kernel_serialized(*arrays, linear.detach().cpu().to(torch.float64).numpy(),
                                 offset.detach().cpu().to(torch.float64).numpy(), *out)
    return tuple(torch.from_numpy(o).to(dtype) for o in out)  # type: ignore[return-value]
