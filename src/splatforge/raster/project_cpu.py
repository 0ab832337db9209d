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

from .project import ALPHA_THRESHOLD, MAX_EXTEND, Projection

PINHOLE, ORTHO = 0, 1


CHUNK = 256  # Gaussians per parallel task: scratch matrices are allocated once per task


@numba.njit(cache=True, inline="always")
def _mm(a, b, out):
    """out = a @ b for small matrices (numba's @ calls BLAS, far too slow at 3x3)."""
    for i in range(a.shape[0]):
        for j in range(b.shape[1]):
            acc = 0.0
            for k in range(a.shape[1]):
                acc += a[i, k] * b[k, j]
            out[i, j] = acc


@numba.njit(cache=True, inline="always")
def _mm_t(a, b, out):
    """out = a @ b.T"""
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            acc = 0.0
            for k in range(a.shape[1]):
                acc += a[i, k] * b[j, k]
            out[i, j] = acc


@numba.njit(cache=True, inline="always")
def _t_mm(a, b, out):
    """out = a.T @ b"""
    for i in range(a.shape[1]):
        for j in range(b.shape[1]):
            acc = 0.0
            for k in range(a.shape[0]):
                acc += a[k, i] * b[k, j]
            out[i, j] = acc


@numba.njit(cache=True, inline="always")
def _rotation(q, r):
    """Fill r with the rotation of quaternion q (w, x, y, z), normalized; return it and |q|."""
    norm = max(math.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]), 1e-12)
    w, x, y, z = q[0] / norm, q[1] / norm, q[2] / norm, q[3] / norm
    r[0, 0], r[0, 1], r[0, 2] = 1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)
    r[1, 0], r[1, 1], r[1, 2] = 2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)
    r[2, 0], r[2, 1], r[2, 2] = 2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)
    return w, x, y, z, norm


@numba.njit(cache=True, inline="always")
def _world_covariance(rot, scales, m, sigma):
    """m = R diag(s), sigma = m m^T."""
    for i in range(3):
        for j in range(3):
            m[i, j] = rot[i, j] * scales[j]
    _mm_t(m, m, sigma)


@numba.njit(cache=True, inline="always")
def _camera(model, vm, k, width, height, mean, sigma, pc, jac, tmp, cov_c, cov2):
    """Camera-space mean pc, Jacobian jac, camera covariance cov_c and 2D covariance cov2;
    returns the 2D mean, the clamped tx, ty and whether each was clamped."""
    for i in range(3):
        pc[i] = vm[i, 0] * mean[0] + vm[i, 1] * mean[1] + vm[i, 2] * mean[2] + vm[i, 3]
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    clip_x = clip_y = False
    tx, ty = pc[0], pc[1]
    jac[0, 1] = jac[1, 0] = 0.0
    if model == ORTHO:
        jac[0, 0], jac[0, 2], jac[1, 1], jac[1, 2] = fx, 0.0, fy, 0.0
        mx, my = fx * pc[0] + cx, fy * pc[1] + cy
    else:
        z = pc[2]
        lim_x_pos = (width - cx) / fx + 0.3 * (0.5 * width / fx)
        lim_x_neg = cx / fx + 0.3 * (0.5 * width / fx)
        lim_y_pos = (height - cy) / fy + 0.3 * (0.5 * height / fy)
        lim_y_neg = cy / fy + 0.3 * (0.5 * height / fy)
        rx, ry = pc[0] / z, pc[1] / z
        clip_x = rx < -lim_x_neg or rx > lim_x_pos
        clip_y = ry < -lim_y_neg or ry > lim_y_pos
        tx = z * min(max(rx, -lim_x_neg), lim_x_pos)
        ty = z * min(max(ry, -lim_y_neg), lim_y_pos)
        jac[0, 0], jac[0, 2] = fx / z, -fx * tx / (z * z)
        jac[1, 1], jac[1, 2] = fy / z, -fy * ty / (z * z)
        mx, my = fx * pc[0] / z + cx, fy * pc[1] / z + cy
    w = vm[:3, :3]
    _mm(w, sigma, tmp)
    _mm_t(tmp, w, cov_c)
    _mm(jac, cov_c, tmp[:2])
    _mm_t(tmp[:2], jac, cov2)
    return mx, my, tx, ty, clip_x, clip_y


@numba.njit(cache=True, parallel=True, error_model="numpy")
def project_forward(means, quats, scales, opacities, viewmats, ks, width, height, eps2d, near, far, radius_clip,
                    model, calc_comp, radii, means2d, depths, conics, comps):
    n_batch, n_cams, n = viewmats.shape[0], viewmats.shape[1], means.shape[1]
    n_chunks = (n + CHUNK - 1) // CHUNK
    for task in numba.prange(n_batch * n_chunks):
        b, first = task // n_chunks, (task % n_chunks) * CHUNK
        rot, m, sigma = np.empty((3, 3)), np.empty((3, 3)), np.empty((3, 3))
        tmp, cov_c, jac, cov2, pc = np.empty((3, 3)), np.empty((3, 3)), np.empty((2, 3)), np.empty((2, 2)), np.empty(3)
        for g in range(first, min(first + CHUNK, n)):
            _rotation(quats[b, g], rot)
            _world_covariance(rot, scales[b, g], m, sigma)
            for c in range(n_cams):
                vm = viewmats[b, c]
                z = vm[2, 0] * means[b, g, 0] + vm[2, 1] * means[b, g, 1] + vm[2, 2] * means[b, g, 2] + vm[2, 3]
                depths[b, c, g] = z
                radii[b, c, g, 0] = radii[b, c, g, 1] = 0
                means2d[b, c, g, 0] = means2d[b, c, g, 1] = 0.0
                conics[b, c, g, 0] = conics[b, c, g, 1] = conics[b, c, g, 2] = 0.0
                comps[b, c, g] = 0.0
                if not (z > near and z < far):
                    continue
                mx, my, _, _, _, _ = _camera(model, vm, ks[b, c], width, height, means[b, g], sigma, pc, jac, tmp,
                                             cov_c, cov2)
                a0, bb, c0 = cov2[0, 0], 0.5 * (cov2[0, 1] + cov2[1, 0]), cov2[1, 1]
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


@numba.njit(cache=True, parallel=True, error_model="numpy")
def project_backward(means, quats, scales, viewmats, ks, width, height, eps2d, near, far, model, calc_comp,
                     v_means2d, v_depths, v_conics, v_comps, v_means, v_quats, v_scales):
    n_batch, n_cams, n = viewmats.shape[0], viewmats.shape[1], means.shape[1]
    n_chunks = (n + CHUNK - 1) // CHUNK
    for task in numba.prange(n_batch * n_chunks):
        b, first = task // n_chunks, (task % n_chunks) * CHUNK
        rot, m, sigma = np.empty((3, 3)), np.empty((3, 3)), np.empty((3, 3))
        tmp, cov_c, jac, cov2, pc = np.empty((3, 3)), np.empty((3, 3)), np.empty((2, 3)), np.empty((2, 2)), np.empty(3)
        gm, gj, v_cov_c, v_sigma = np.empty((2, 2)), np.empty((2, 3)), np.empty((3, 3)), np.empty((3, 3))
        v_jac, v_m, v_r = np.empty((2, 3)), np.empty((3, 3)), np.empty((3, 3))
        for g in range(first, min(first + CHUNK, n)):
            w, x, y, z_q, norm = _rotation(quats[b, g], rot)
            _world_covariance(rot, scales[b, g], m, sigma)
            v_sigma[:] = 0.0
            v_mx = v_my = v_mz = 0.0
            for c in range(n_cams):
                vm, k = viewmats[b, c], ks[b, c]
                wrot = vm[:3, :3]
                zc = wrot[2, 0] * means[b, g, 0] + wrot[2, 1] * means[b, g, 1] + wrot[2, 2] * means[b, g, 2] + vm[2, 3]
                v_px, v_py, v_pz = 0.0, 0.0, v_depths[b, c, g]  # depths are returned culled or not
                if zc > near and zc < far:
                    _, _, tx, ty, clip_x, clip_y = _camera(model, vm, k, width, height, means[b, g], sigma, pc, jac,
                                                           tmp, cov_c, cov2)
                    a0, bb, c0 = cov2[0, 0], 0.5 * (cov2[0, 1] + cov2[1, 0]), cov2[1, 1]
                    a, cc = a0 + eps2d, c0 + eps2d
                    det = a * cc - bb * bb
                    if det > 0:
                        inv = 1.0 / det
                        v0, v1, v2 = v_conics[b, c, g, 0], v_conics[b, c, g, 1], v_conics[b, c, g, 2]
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
                        # d loss / d cov2d, symmetric (b is the mean of the two off-diagonals)
                        gm[0, 0], gm[0, 1], gm[1, 0], gm[1, 1] = v_a, 0.5 * v_b, 0.5 * v_b, v_c
                        _mm(gm, jac, gj)  # G J
                        _t_mm(jac, gj, v_cov_c)  # J^T G J
                        _mm(gj, cov_c, v_jac)  # (G J Sigma_c); d loss / d J is twice this
                        _t_mm(wrot, v_cov_c, tmp)
                        for i in range(3):
                            for j in range(3):
                                acc = 0.0
                                for q in range(3):
                                    acc += tmp[i, q] * wrot[q, j]
                                v_sigma[i, j] += acc
                        fx, fy = k[0, 0], k[1, 1]
                        vm0, vm1 = v_means2d[b, c, g, 0], v_means2d[b, c, g, 1]
                        if model == ORTHO:
                            v_px += vm0 * fx
                            v_py += vm1 * fy
                        else:
                            zz = pc[2]
                            z2, z3 = zz * zz, zz * zz * zz
                            j00, j02, j11, j12 = 2.0 * v_jac[0, 0], 2.0 * v_jac[0, 2], 2.0 * v_jac[1, 1], 2.0 * v_jac[1, 2]
                            v_px += vm0 * fx / zz
                            v_py += vm1 * fy / zz
                            v_pz += -vm0 * fx * pc[0] / z2 - vm1 * fy * pc[1] / z2
                            # J00 = fx/z, J02 = -fx tx/z^2, J11 = fy/z, J12 = -fy ty/z^2, where tx = x
                            # unless clamped (then tx = z * limit, so tx/z is fixed)
                            v_pz += -j00 * fx / z2 - j11 * fy / z2
                            if clip_x:
                                v_pz += j02 * fx * tx / z3
                            else:
                                v_px += -j02 * fx / z2
                                v_pz += j02 * 2.0 * fx * tx / z3
                            if clip_y:
                                v_pz += j12 * fy * ty / z3
                            else:
                                v_py += -j12 * fy / z2
                                v_pz += j12 * 2.0 * fy * ty / z3
                v_mx += wrot[0, 0] * v_px + wrot[1, 0] * v_py + wrot[2, 0] * v_pz
                v_my += wrot[0, 1] * v_px + wrot[1, 1] * v_py + wrot[2, 1] * v_pz
                v_mz += wrot[0, 2] * v_px + wrot[1, 2] * v_py + wrot[2, 2] * v_pz
            v_means[b, g, 0], v_means[b, g, 1], v_means[b, g, 2] = v_mx, v_my, v_mz
            # sigma = M M^T with M = R diag(s): d loss / d M = (G + G^T) M
            for i in range(3):
                for j in range(3):
                    acc = 0.0
                    for q in range(3):
                        acc += (v_sigma[i, q] + v_sigma[q, i]) * m[q, j]
                    v_m[i, j] = acc
            for j in range(3):
                s_grad = 0.0
                for i in range(3):
                    v_r[i, j] = v_m[i, j] * scales[b, g, j]
                    s_grad += v_m[i, j] * rot[i, j]
                v_scales[b, g, j] = s_grad
            vw = 2.0 * (-z_q * v_r[0, 1] + y * v_r[0, 2] + z_q * v_r[1, 0] - x * v_r[1, 2] - y * v_r[2, 0]
                        + x * v_r[2, 1])
            vx = 2.0 * (y * v_r[0, 1] + z_q * v_r[0, 2] + y * v_r[1, 0] - 2.0 * x * v_r[1, 1] - w * v_r[1, 2]
                        + z_q * v_r[2, 0] + w * v_r[2, 1] - 2.0 * x * v_r[2, 2])
            vy = 2.0 * (-2.0 * y * v_r[0, 0] + x * v_r[0, 1] + w * v_r[0, 2] + x * v_r[1, 0] + z_q * v_r[1, 2]
                        - w * v_r[2, 0] + z_q * v_r[2, 1] - 2.0 * y * v_r[2, 2])
            vz = 2.0 * (-2.0 * z_q * v_r[0, 0] - w * v_r[0, 1] + x * v_r[0, 2] + w * v_r[1, 0] - 2.0 * z_q * v_r[1, 1]
                        + y * v_r[1, 2] + x * v_r[2, 0] + y * v_r[2, 1])
            # through the normalization q / |q|
            dot = w * vw + x * vx + y * vy + z_q * vz
            v_quats[b, g, 0] = (vw - w * dot) / norm
            v_quats[b, g, 1] = (vx - x * dot) / norm
            v_quats[b, g, 2] = (vy - y * dot) / norm
            v_quats[b, g, 3] = (vz - z_q * dot) / norm


def _np(t: torch.Tensor, dtype=np.float64) -> np.ndarray:
    return t.detach().to("cpu").numpy().astype(dtype, copy=False)


class _FusedProjection(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, quats, scales, opacities, viewmats, ks, width, height, eps2d, near, far,
                radius_clip, model, calc_comp):
        nb, n, nc = means.shape[0], means.shape[1], viewmats.shape[1]
        arrays = [_np(t) for t in (means, quats, scales, opacities, viewmats, ks)]
        radii = np.empty((nb, nc, n, 2), np.int32)
        means2d = np.empty((nb, nc, n, 2))
        depths = np.empty((nb, nc, n))
        conics = np.empty((nb, nc, n, 3))
        comps = np.empty((nb, nc, n))
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
        grads = [np.zeros_like(means), np.zeros_like(quats), np.zeros_like(scales)]
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
