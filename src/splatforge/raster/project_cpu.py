"""Fused EWA projection on the CPU: Numba forward and hand-derived backward, one pass each.

The same mathematics as `project.project_gaussians` (vectorized torch, differentiated by autograd),
which stays the reference the tests hold this to. For a real scene the torch form spends most of
its time in allocation and in autograd's graph (~65 ms of a ~290 ms garden step); this does the
work per (camera, Gaussian) in registers. It covers quats and scales (not user covariances),
pinhole and orthographic cameras, and cameras that need no gradient; `rasterization` uses the
torch form for everything else.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

from ..core.parallel import serialized
from .project import ALPHA_THRESHOLD, MAX_EXTEND, Projection

PINHOLE, ORTHO = 0, 1
PROJECTION_FASTMATH = {"contract", "arcp", "nsz"}  # FMAs and reciprocals: a few ulp, same on every run


# Everything per (camera, Gaussian) lives in scalar locals: 3x3 matrices as 9-tuples (row-major),
# symmetric ones as 6-tuples (xx, xy, xz, yy, yz, zz). Small arrays and slices cost more than the
# arithmetic (2.8 -> ms forward at 50k Gaussians before this form). Inputs may be float32 or float64;
# the arithmetic is float64 and results are stored in the inputs' dtype.


@numba.njit(cache=True, inline="always")
def quat_rotation(qw, qx, qy, qz):
    """The normalized quaternion (w, x, y, z), its norm, and its rotation matrix (9-tuple, row-major).
    A Numba device function: other kernels (MCMC noise) call it inside their own loops."""
    norm = max(math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz), 1e-12)
    w, x, y, z = qw / norm, qx / norm, qy / norm, qz / norm
    rot = (1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y),
           2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x),
           2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y))
    return w, x, y, z, norm, rot


@numba.njit(cache=True, inline="always")
def world_covariance(rot, sx, sy, sz):
    """M = R diag(s) (9-tuple) and Sigma = M M^T (6-tuple)."""
    m = (rot[0] * sx, rot[1] * sy, rot[2] * sz, rot[3] * sx, rot[4] * sy, rot[5] * sz,
         rot[6] * sx, rot[7] * sy, rot[8] * sz)
    sigma = (m[0] * m[0] + m[1] * m[1] + m[2] * m[2], m[0] * m[3] + m[1] * m[4] + m[2] * m[5],
             m[0] * m[6] + m[1] * m[7] + m[2] * m[8], m[3] * m[3] + m[4] * m[4] + m[5] * m[5],
             m[3] * m[6] + m[4] * m[7] + m[5] * m[8], m[6] * m[6] + m[7] * m[7] + m[8] * m[8])
    return m, sigma


@numba.njit(cache=True, inline="always")
def _congruence(w, s):
    """W S W^T for a 3x3 W (9-tuple) and a symmetric S (6-tuple), as a 6-tuple."""
    s00, s01, s02, s11, s12, s22 = s
    t00 = w[0] * s00 + w[1] * s01 + w[2] * s02
    t01 = w[0] * s01 + w[1] * s11 + w[2] * s12
    t02 = w[0] * s02 + w[1] * s12 + w[2] * s22
    t10 = w[3] * s00 + w[4] * s01 + w[5] * s02
    t11 = w[3] * s01 + w[4] * s11 + w[5] * s12
    t12 = w[3] * s02 + w[4] * s12 + w[5] * s22
    t20 = w[6] * s00 + w[7] * s01 + w[8] * s02
    t21 = w[6] * s01 + w[7] * s11 + w[8] * s12
    t22 = w[6] * s02 + w[7] * s12 + w[8] * s22
    return (t00 * w[0] + t01 * w[1] + t02 * w[2], t00 * w[3] + t01 * w[4] + t02 * w[5],
            t00 * w[6] + t01 * w[7] + t02 * w[8], t10 * w[3] + t11 * w[4] + t12 * w[5],
            t10 * w[6] + t11 * w[7] + t12 * w[8], t20 * w[6] + t21 * w[7] + t22 * w[8])


@numba.njit(cache=True, inline="always")
def _view(vm):
    """The rotation (9-tuple) and translation of a world-to-camera matrix."""
    rot = (np.float64(vm[0, 0]), np.float64(vm[0, 1]), np.float64(vm[0, 2]), np.float64(vm[1, 0]),
           np.float64(vm[1, 1]), np.float64(vm[1, 2]), np.float64(vm[2, 0]), np.float64(vm[2, 1]),
           np.float64(vm[2, 2]))
    return rot, np.float64(vm[0, 3]), np.float64(vm[1, 3]), np.float64(vm[2, 3])


@numba.njit(cache=True, inline="always")
def _camera(model, w, t0, t1, t2, k, width, height, x, y, z):
    """Camera-space mean, the 2D mean, the Jacobian's entries (j00, j02, j11, j12; the others are 0),
    the clamped tx, ty and whether each was clamped."""
    px = w[0] * x + w[1] * y + w[2] * z + t0
    py = w[3] * x + w[4] * y + w[5] * z + t1
    pz = w[6] * x + w[7] * y + w[8] * z + t2
    fx, fy, cx, cy = np.float64(k[0, 0]), np.float64(k[1, 1]), np.float64(k[0, 2]), np.float64(k[1, 2])
    if model == ORTHO:
        return px, py, pz, fx * px + cx, fy * py + cy, fx, 0.0, fy, 0.0, px, py, False, False
    lim_x_pos = (width - cx) / fx + 0.3 * (0.5 * width / fx)
    lim_x_neg = cx / fx + 0.3 * (0.5 * width / fx)
    lim_y_pos = (height - cy) / fy + 0.3 * (0.5 * height / fy)
    lim_y_neg = cy / fy + 0.3 * (0.5 * height / fy)
    rx, ry = px / pz, py / pz
    clip_x = rx < -lim_x_neg or rx > lim_x_pos
    clip_y = ry < -lim_y_neg or ry > lim_y_pos
    tx = pz * min(max(rx, -lim_x_neg), lim_x_pos)
    ty = pz * min(max(ry, -lim_y_neg), lim_y_pos)
    return (px, py, pz, fx * px / pz + cx, fy * py / pz + cy, fx / pz, -fx * tx / (pz * pz), fy / pz,
            -fy * ty / (pz * pz), tx, ty, clip_x, clip_y)


@numba.njit(cache=True, inline="always")
def _image_covariance(cov, j00, j02, j11, j12):
    """J C J^T for the Jacobian [[j00, 0, j02], [0, j11, j12]] and a symmetric C (6-tuple): a, b, c."""
    c00, c01, c02, c11, c12, c22 = cov
    return (j00 * j00 * c00 + 2.0 * j00 * j02 * c02 + j02 * j02 * c22,
            j00 * j11 * c01 + j00 * j12 * c02 + j02 * j11 * c12 + j02 * j12 * c22,
            j11 * j11 * c11 + 2.0 * j11 * j12 * c12 + j12 * j12 * c22)


@serialized
@numba.njit(cache=True, parallel=True, error_model="numpy")
def project_forward(means, quats, scales, opacities, viewmats, ks, width, height, eps2d, near, far, radius_clip,
                    model, calc_comp, radii, means2d, depths, conics, comps):
    n_batch, n = means.shape[0], means.shape[1]
    n_chunks = (n + CHUNK - 1) // CHUNK
    for task in numba.prange(n_batch * n_chunks):
        b, first = task // n_chunks, (task % n_chunks) * CHUNK
        _forward_chunk(b, first, min(first + CHUNK, n), means, quats, scales, opacities, viewmats, ks, width, height,
                       eps2d, near, far, radius_clip, model, calc_comp, radii, means2d, depths, conics, comps)


# The per-Gaussian work runs in a function of its own, called once per chunk of Gaussians: Numba's
# parallel analysis does not follow tuples of tuples, and a call per Gaussian passing a dozen arrays
# cost as much as the work.
CHUNK = 512


@numba.njit(cache=True, error_model="numpy", fastmath=PROJECTION_FASTMATH)
def _forward_chunk(b, first, last, means, quats, scales, opacities, viewmats, ks, width, height, eps2d, near, far,
                   radius_clip, model, calc_comp, radii, means2d, depths, conics, comps):
    for g in range(first, last):
        _forward_one(b, g, means, quats, scales, opacities, viewmats, ks, width, height, eps2d, near, far, radius_clip,
                     model, calc_comp, radii, means2d, depths, conics, comps)


@numba.njit(cache=True, inline="always")
def _forward_one(b, g, means, quats, scales, opacities, viewmats, ks, width, height, eps2d, near, far, radius_clip,
                 model, calc_comp, radii, means2d, depths, conics, comps):
    n_cams = viewmats.shape[1]
    x, y, z = np.float64(means[b, g, 0]), np.float64(means[b, g, 1]), np.float64(means[b, g, 2])
    rot = quat_rotation(np.float64(quats[b, g, 0]), np.float64(quats[b, g, 1]), np.float64(quats[b, g, 2]),
                        np.float64(quats[b, g, 3]))[5]
    sigma = world_covariance(rot, np.float64(scales[b, g, 0]), np.float64(scales[b, g, 1]),
                             np.float64(scales[b, g, 2]))[1]
    for c in range(n_cams):
        w, t0, t1, t2 = _view(viewmats[b, c])
        zc = w[6] * x + w[7] * y + w[8] * z + t2
        depths[b, c, g] = zc
        radii[b, c, g, 0] = radii[b, c, g, 1] = 0
        means2d[b, c, g, 0] = means2d[b, c, g, 1] = 0.0
        conics[b, c, g, 0] = conics[b, c, g, 1] = conics[b, c, g, 2] = 0.0
        comps[b, c, g] = 0.0
        if not (zc > near and zc < far):
            continue
        cam = _camera(model, w, t0, t1, t2, ks[b, c], width, height, x, y, z)
        mx, my, j00, j02, j11, j12 = cam[3], cam[4], cam[5], cam[6], cam[7], cam[8]
        a0, bb, c0 = _image_covariance(_congruence(w, sigma), j00, j02, j11, j12)
        a, cc = a0 + eps2d, c0 + eps2d
        det = a * cc - bb * bb
        if not det > 0:
            continue
        comp = math.sqrt(max(0.0, (a0 * c0 - bb * bb) / det))
        means2d[b, c, g, 0], means2d[b, c, g, 1] = mx, my
        conics[b, c, g, 0], conics[b, c, g, 1], conics[b, c, g, 2] = cc / det, -bb / det, a / det
        comps[b, c, g] = comp
        op = opacities[b, g] * (comp if calc_comp else 1.0)
        if op < ALPHA_THRESHOLD:
            continue
        extend = min(MAX_EXTEND, math.sqrt(2.0 * math.log(op / ALPHA_THRESHOLD)))
        rx = math.ceil(extend * math.sqrt(a))
        ry = math.ceil(extend * math.sqrt(cc))
        if rx <= radius_clip and ry <= radius_clip:
            continue
        if mx + rx <= 0 or mx - rx >= width or my + ry <= 0 or my - ry >= height:
            continue
        radii[b, c, g, 0] = np.int32(min(rx, 2e9))
        radii[b, c, g, 1] = np.int32(min(ry, 2e9))


@serialized
@numba.njit(cache=True, parallel=True, error_model="numpy")
def project_backward(means, quats, scales, viewmats, ks, width, height, eps2d, near, far, model, calc_comp,
                     v_means2d, v_depths, v_conics, v_comps, v_means, v_quats, v_scales):
    n_batch, n = means.shape[0], means.shape[1]
    n_chunks = (n + CHUNK - 1) // CHUNK
    for task in numba.prange(n_batch * n_chunks):
        b, first = task // n_chunks, (task % n_chunks) * CHUNK
        _backward_chunk(b, first, min(first + CHUNK, n), means, quats, scales, viewmats, ks, width, height, eps2d, near,
                        far, model, calc_comp, v_means2d, v_depths, v_conics, v_comps, v_means, v_quats, v_scales)


@numba.njit(cache=True, error_model="numpy", fastmath=PROJECTION_FASTMATH)
def _backward_chunk(b, first, last, means, quats, scales, viewmats, ks, width, height, eps2d, near, far, model,
                    calc_comp, v_means2d, v_depths, v_conics, v_comps, v_means, v_quats, v_scales):
    for g in range(first, last):
        _backward_one(b, g, means, quats, scales, viewmats, ks, width, height, eps2d, near, far, model, calc_comp,
                      v_means2d, v_depths, v_conics, v_comps, v_means, v_quats, v_scales)


@numba.njit(cache=True, inline="always")
def _backward_one(b, g, means, quats, scales, viewmats, ks, width, height, eps2d, near, far, model, calc_comp,
                  v_means2d, v_depths, v_conics, v_comps, v_means, v_quats, v_scales):
    n_cams = viewmats.shape[1]
    x, y, z = np.float64(means[b, g, 0]), np.float64(means[b, g, 1]), np.float64(means[b, g, 2])
    w, qx, qy, qz, norm, rot = quat_rotation(np.float64(quats[b, g, 0]), np.float64(quats[b, g, 1]),
                                             np.float64(quats[b, g, 2]), np.float64(quats[b, g, 3]))
    sx, sy, sz = np.float64(scales[b, g, 0]), np.float64(scales[b, g, 1]), np.float64(scales[b, g, 2])
    m, sigma = world_covariance(rot, sx, sy, sz)
    vs00 = vs01 = vs02 = vs11 = vs12 = vs22 = 0.0  # d loss / d Sigma (symmetric), over the cameras
    v_mx = v_my = v_mz = 0.0
    for c in range(n_cams):
        wr, t0, t1, t2 = _view(viewmats[b, c])
        zc = wr[6] * x + wr[7] * y + wr[8] * z + t2
        v_px, v_py, v_pz = 0.0, 0.0, np.float64(v_depths[b, c, g])  # depths are returned culled or not
        if zc > near and zc < far:
            k = ks[b, c]
            pcx, pcy, pz, _, _, j00, j02, j11, j12, tx, ty, clip_x, clip_y = _camera(
                model, wr, t0, t1, t2, k, width, height, x, y, z)
            cov = _congruence(wr, sigma)
            a0, bb, c0 = _image_covariance(cov, j00, j02, j11, j12)
            a, cc = a0 + eps2d, c0 + eps2d
            det = a * cc - bb * bb
            if det > 0:
                inv = 1.0 / det
                v0, v1, v2 = (np.float64(v_conics[b, c, g, 0]), np.float64(v_conics[b, c, g, 1]),
                              np.float64(v_conics[b, c, g, 2]))
                s_dot = v0 * cc - v1 * bb + v2 * a
                v_a = v2 * inv - s_dot * inv * inv * cc
                v_b = -v1 * inv + s_dot * 2.0 * bb * inv * inv
                v_c = v0 * inv - s_dot * inv * inv * a
                det0 = a0 * c0 - bb * bb
                ratio = det0 / det
                if calc_comp and ratio > 0:
                    v_ratio = v_comps[b, c, g] * 0.5 / math.sqrt(ratio)
                    v_a += v_ratio * (c0 * det - det0 * cc) * inv * inv
                    v_c += v_ratio * (a0 * det - det0 * a) * inv * inv
                    v_b += v_ratio * (-2.0 * bb) * (det - det0) * inv * inv
                # G = d loss / d cov2d, symmetric (b is the mean of the two off-diagonals); G J:
                g01 = 0.5 * v_b
                gj00, gj01, gj02 = v_a * j00, g01 * j11, v_a * j02 + g01 * j12
                gj10, gj11, gj12 = g01 * j00, v_c * j11, g01 * j02 + v_c * j12
                # d loss / d C = J^T G J, into d loss / d Sigma = W^T (J^T G J) W
                v_cov = (j00 * gj00, j00 * gj01, j00 * gj02, j11 * gj11, j11 * gj12, j02 * gj02 + j12 * gj12)
                wt = (wr[0], wr[3], wr[6], wr[1], wr[4], wr[7], wr[2], wr[5], wr[8])
                d00, d01, d02, d11, d12, d22 = _congruence(wt, v_cov)
                vs00, vs01, vs02, vs11, vs12, vs22 = (vs00 + d00, vs01 + d01, vs02 + d02, vs11 + d11,
                                                      vs12 + d12, vs22 + d22)
                fx, fy = np.float64(k[0, 0]), np.float64(k[1, 1])
                vm0, vm1 = np.float64(v_means2d[b, c, g, 0]), np.float64(v_means2d[b, c, g, 1])
                if model == ORTHO:
                    v_px += vm0 * fx
                    v_py += vm1 * fy
                else:
                    # d loss / d J = 2 G J C, at the entries J depends on
                    c00, c01, c02, c11, c12, c22 = cov
                    j00_ = 2.0 * (gj00 * c00 + gj01 * c01 + gj02 * c02)
                    j02_ = 2.0 * (gj00 * c02 + gj01 * c12 + gj02 * c22)
                    j11_ = 2.0 * (gj10 * c01 + gj11 * c11 + gj12 * c12)
                    j12_ = 2.0 * (gj10 * c02 + gj11 * c12 + gj12 * c22)
                    z2, z3 = pz * pz, pz * pz * pz
                    v_px += vm0 * fx / pz
                    v_py += vm1 * fy / pz
                    v_pz += -vm0 * fx * pcx / z2 - vm1 * fy * pcy / z2
                    # J00 = fx/z, J02 = -fx tx/z^2, J11 = fy/z, J12 = -fy ty/z^2, where tx = x
                    # unless clamped (then tx = z * limit, so tx/z is fixed)
                    v_pz += -j00_ * fx / z2 - j11_ * fy / z2
                    if clip_x:
                        v_pz += j02_ * fx * tx / z3
                    else:
                        v_px += -j02_ * fx / z2
                        v_pz += j02_ * 2.0 * fx * tx / z3
                    if clip_y:
                        v_pz += j12_ * fy * ty / z3
                    else:
                        v_py += -j12_ * fy / z2
                        v_pz += j12_ * 2.0 * fy * ty / z3
        v_mx += wr[0] * v_px + wr[3] * v_py + wr[6] * v_pz
        v_my += wr[1] * v_px + wr[4] * v_py + wr[7] * v_pz
        v_mz += wr[2] * v_px + wr[5] * v_py + wr[8] * v_pz
    v_means[b, g, 0], v_means[b, g, 1], v_means[b, g, 2] = v_mx, v_my, v_mz
    # Sigma = M M^T with M = R diag(s): d loss / d M = (G + G^T) M = 2 G M (G symmetric)
    vm_ = (2.0 * (vs00 * m[0] + vs01 * m[3] + vs02 * m[6]), 2.0 * (vs00 * m[1] + vs01 * m[4] + vs02 * m[7]),
           2.0 * (vs00 * m[2] + vs01 * m[5] + vs02 * m[8]), 2.0 * (vs01 * m[0] + vs11 * m[3] + vs12 * m[6]),
           2.0 * (vs01 * m[1] + vs11 * m[4] + vs12 * m[7]), 2.0 * (vs01 * m[2] + vs11 * m[5] + vs12 * m[8]),
           2.0 * (vs02 * m[0] + vs12 * m[3] + vs22 * m[6]), 2.0 * (vs02 * m[1] + vs12 * m[4] + vs22 * m[7]),
           2.0 * (vs02 * m[2] + vs12 * m[5] + vs22 * m[8]))
    v_scales[b, g, 0] = vm_[0] * rot[0] + vm_[3] * rot[3] + vm_[6] * rot[6]
    v_scales[b, g, 1] = vm_[1] * rot[1] + vm_[4] * rot[4] + vm_[7] * rot[7]
    v_scales[b, g, 2] = vm_[2] * rot[2] + vm_[5] * rot[5] + vm_[8] * rot[8]
    r00, r01, r02 = vm_[0] * sx, vm_[1] * sy, vm_[2] * sz  # d loss / d R
    r10, r11, r12 = vm_[3] * sx, vm_[4] * sy, vm_[5] * sz
    r20, r21, r22 = vm_[6] * sx, vm_[7] * sy, vm_[8] * sz
    x_, y_, z_ = qx, qy, qz
    vw = 2.0 * (-z_ * r01 + y_ * r02 + z_ * r10 - x_ * r12 - y_ * r20 + x_ * r21)
    vx = 2.0 * (y_ * r01 + z_ * r02 + y_ * r10 - 2.0 * x_ * r11 - w * r12 + z_ * r20 + w * r21 - 2.0 * x_ * r22)
    vy = 2.0 * (-2.0 * y_ * r00 + x_ * r01 + w * r02 + x_ * r10 + z_ * r12 - w * r20 + z_ * r21 - 2.0 * y_ * r22)
    vz = 2.0 * (-2.0 * z_ * r00 - w * r01 + x_ * r02 + w * r10 - 2.0 * z_ * r11 + y_ * r12 + x_ * r20 + y_ * r21)
    # through the normalization q / |q|
    dot = w * vw + x_ * vx + y_ * vy + z_ * vz
    v_quats[b, g, 0] = (vw - w * dot) / norm
    v_quats[b, g, 1] = (vx - x_ * dot) / norm
    v_quats[b, g, 2] = (vy - y_ * dot) / norm
    v_quats[b, g, 3] = (vz - z_ * dot) / norm


def _np(t: torch.Tensor) -> np.ndarray:
    """A contiguous float32 (float64 if it is float64) array of t's values: the kernels' inputs."""
    t = t.detach().to("cpu")
    return t.to(torch.float64 if t.dtype == torch.float64 else torch.float32).contiguous().numpy()


class _FusedProjection(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, quats, scales, opacities, viewmats, ks, width, height, eps2d, near, far,
                radius_clip, model, calc_comp):
        nb, n, nc = means.shape[0], means.shape[1], viewmats.shape[1]
        arrays = [_np(t) for t in (means, quats, scales, opacities)]
        arrays += [_np(t).astype(np.float64) for t in (viewmats, ks)]
        dtype = arrays[0].dtype
        radii = np.empty((nb, nc, n, 2), np.int32)
        means2d = np.empty((nb, nc, n, 2), dtype)
        depths = np.empty((nb, nc, n), dtype)
        conics = np.empty((nb, nc, n, 3), dtype)
        comps = np.empty((nb, nc, n), dtype)
        settings = (width, height, float(eps2d), float(near), float(far))
        project_forward(*arrays, *settings, float(radius_clip), model, calc_comp, radii, means2d, depths, conics,
                        comps)
        ctx.arrays = (arrays[0], arrays[1], arrays[2], arrays[4], arrays[5])
        ctx.settings = settings + (model, calc_comp)
        like = dict(dtype=means.dtype, device=means.device)
        radii_t = torch.from_numpy(radii).to(means.device)
        ctx.mark_non_differentiable(radii_t)
        return (radii_t, *(torch.from_numpy(a).to(**like) for a in (means2d, depths, conics, comps)))

    @staticmethod
    def backward(ctx, _v_radii, v_means2d, v_depths, v_conics, v_comps):
        means, quats, scales, viewmats, ks = ctx.arrays
        grads = [np.empty_like(means), np.empty_like(quats), np.empty_like(scales)]
        project_backward(means, quats, scales, viewmats, ks, *ctx.settings,
                         *(_np(v) for v in (v_means2d, v_depths, v_conics, v_comps)), *grads)
        like = v_means2d
        out = [torch.from_numpy(g).to(like.device, like.dtype) for g in grads]
        return (*out, None, None, None, None, None, None, None, None, None, None, None)


def can_fuse(covars, viewmats, Ks, camera_model: str) -> bool:
    """The fused path covers quats + scales, pinhole/ortho cameras that need no gradient."""
    return (covars is None and camera_model in ("pinhole", "ortho") and not viewmats.requires_grad
            and not Ks.requires_grad)


def project_gaussians_fused(means, quats, scales, opacities, viewmats, Ks, width, height, eps2d=0.3,
                            near_plane=0.01, far_plane=1e10, radius_clip=0.0, calc_compensations=False,
                            camera_model="pinhole") -> Projection:
    """`project.project_gaussians` for quats and scales, as one Numba pass (see the module doc)."""
    batch = means.shape[:-2]
    n, c = means.shape[-2], viewmats.shape[-3]
    n_batch = math.prod(batch)
    flat = lambda t, tail: t.reshape((n_batch,) + tail)  # noqa: E731
    radii, means2d, depths, conics, comps = _FusedProjection.apply(
        flat(means, (n, 3)), flat(quats, (n, 4)), flat(scales, (n, 3)), flat(opacities, (n,)),
        flat(viewmats, (c, 4, 4)), flat(Ks, (c, 3, 3)), width, height, eps2d, near_plane, far_plane, radius_clip,
        ORTHO if camera_model == "ortho" else PINHOLE, calc_compensations,
    )
    shape = batch + (c, n)
    return Projection(radii.reshape(shape + (2,)), means2d.reshape(shape + (2,)), depths.reshape(shape),
                      conics.reshape(shape + (3,)), comps.reshape(shape) if calc_compensations else None)
