"""Fused screen-space transform of 2D Gaussians (Numba forward and backward).

The same mathematics as `model.screen_space` (the torch reference) in one pass per direction: at
TinySplat's size a fit step is a few milliseconds, and the two dozen small torch ops (and their
autograd nodes) this replaces cost about a millisecond of it.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from torch import Tensor

from ..raster.project import ALPHA_THRESHOLD, MAX_EXTEND


@numba.njit(cache=True, error_model="numpy")
def _forward(means, log_scales, rotations, opacity_logits, height, means_px, conics, opacities, radii):
    for i in range(means.shape[0]):
        means_px[i, 0] = means[i, 0] * height
        means_px[i, 1] = means[i, 1] * height
        cs, sn = math.cos(rotations[i]), math.sin(rotations[i])
        sx2 = math.exp(2.0 * log_scales[i, 0]) * height * height
        sy2 = math.exp(2.0 * log_scales[i, 1]) * height * height
        ix, iy = 1.0 / sx2, 1.0 / sy2
        # inverse covariance R diag(1/sx^2, 1/sy^2) R^T
        conics[i, 0] = cs * cs * ix + sn * sn * iy
        conics[i, 1] = cs * sn * (ix - iy)
        conics[i, 2] = sn * sn * ix + cs * cs * iy
        op = 1.0 / (1.0 + math.exp(-opacity_logits[i]))
        opacities[i] = op
        ok = op >= ALPHA_THRESHOLD and np.isfinite(conics[i, 0] + conics[i, 1] + conics[i, 2])
        ok = ok and np.isfinite(means_px[i, 0] + means_px[i, 1]) and sx2 > 0 and sy2 > 0
        if not ok:
            radii[i, 0] = 0
            radii[i, 1] = 0
            continue
        # the opacity-aware extent gsplat uses: beyond it alpha < 1/255
        extend = min(MAX_EXTEND, math.sqrt(2.0 * math.log(op / ALPHA_THRESHOLD)))
        radii[i, 0] = np.int32(min(1e9, math.ceil(extend * math.sqrt(cs * cs * sx2 + sn * sn * sy2))))
        radii[i, 1] = np.int32(min(1e9, math.ceil(extend * math.sqrt(sn * sn * sx2 + cs * cs * sy2))))


@numba.njit(cache=True, error_model="numpy")
def _backward(log_scales, rotations, opacities, height, v_means_px, v_conics, v_opacities,
              v_means, v_log_scales, v_rotations, v_opacity_logits):
    for i in range(log_scales.shape[0]):
        v_means[i, 0] = v_means_px[i, 0] * height
        v_means[i, 1] = v_means_px[i, 1] * height
        cs, sn = math.cos(rotations[i]), math.sin(rotations[i])
        ix = math.exp(-2.0 * log_scales[i, 0]) / (height * height)
        iy = math.exp(-2.0 * log_scales[i, 1]) / (height * height)
        va, vb, vc = v_conics[i, 0], v_conics[i, 1], v_conics[i, 2]
        v_ix = va * cs * cs + vb * cs * sn + vc * sn * sn
        v_iy = va * sn * sn - vb * cs * sn + vc * cs * cs
        v_log_scales[i, 0] = -2.0 * ix * v_ix
        v_log_scales[i, 1] = -2.0 * iy * v_iy
        v_rotations[i] = (2.0 * cs * sn * (iy - ix) * va + (cs * cs - sn * sn) * (ix - iy) * vb
                          + 2.0 * cs * sn * (ix - iy) * vc)
        op = opacities[i]
        v_opacity_logits[i] = v_opacities[i] * op * (1.0 - op)


class ScreenSpace2D(torch.autograd.Function):
    """(means, log_scales, rotations, opacity_logits) -> pixel means [N, 2], conics [N, 3],
    opacities [N], and radii [N, 2] (int32, no gradient; 0 for Gaussians that cannot show)."""

    @staticmethod
    def forward(ctx, means, log_scales, rotations, opacity_logits, height):
        n = means.shape[0]
        arrays = [t.detach().to(torch.float32).contiguous().numpy() for t in (means, log_scales, rotations,
                                                                            opacity_logits)]
        means_px = np.empty((n, 2), np.float32)
        conics = np.empty((n, 3), np.float32)
        opacities = np.empty(n, np.float32)
        radii = np.empty((n, 2), np.int32)
        _forward(*arrays, float(height), means_px, conics, opacities, radii)
        ctx.saved = (arrays[1], arrays[2], opacities, float(height))
        radii_t = torch.from_numpy(radii)
        ctx.mark_non_differentiable(radii_t)
        return torch.from_numpy(means_px), torch.from_numpy(conics), torch.from_numpy(opacities), radii_t

    @staticmethod
    def backward(ctx, v_means_px, v_conics, v_opacities, _v_radii):
        log_scales, rotations, opacities, height = ctx.saved
        n = log_scales.shape[0]
        zeros = lambda t, shape: np.zeros(shape, np.float32) if t is None else t.to(torch.float32).contiguous().numpy()  # noqa: E731
        out = [np.empty((n, 2), np.float32), np.empty((n, 2), np.float32), np.empty(n, np.float32),
               np.empty(n, np.float32)]
        _backward(log_scales, rotations, opacities, height, zeros(v_means_px, (n, 2)), zeros(v_conics, (n, 3)),
                  zeros(v_opacities, (n,)), *out)
        return (*(torch.from_numpy(o) for o in out), None)


def screen_space_fused(means: Tensor, log_scales: Tensor, rotations: Tensor, opacity_logits: Tensor, height: int):
    return ScreenSpace2D.apply(means, log_scales, rotations, opacity_logits, height)
