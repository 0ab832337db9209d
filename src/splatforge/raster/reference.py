"""Dense PyTorch reference of the compositing step: every pixel against every Gaussian.

Short and slow on purpose. It states the rules the fast kernels must follow, and autograd gives
its gradients, so the tests can hold the Numba kernels to it (and it to finite differences).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from .project import ALPHA_THRESHOLD

ALPHA_MAX = 0.999
T_MIN = 1e-4


def _composite_one_image(means2d, conics, colors, opacities, width, height, chunk, blend):
    """Composite K depth-sorted Gaussians into one image: colours [H*W, D], transmittance [H*W]."""
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=means2d.dtype), torch.arange(width, dtype=means2d.dtype), indexing="ij"
    )
    pixels = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1) + 0.5  # [P, 2]
    out_colors, out_trans = [], []
    for start in range(0, pixels.shape[0], chunk):
        d = means2d[None, :, :] - pixels[start:start + chunk, None, :]  # [p, K, 2]
        dx, dy = d[..., 0], d[..., 1]
        a, b, c = conics[:, 0], conics[:, 1], conics[:, 2]
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = torch.clamp_max(opacities * torch.exp(-sigma), ALPHA_MAX)
        alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_THRESHOLD), alpha, torch.zeros_like(alpha))
        if blend == "sum":  # order-free: weights are the alphas, "transmittance" 1 - sum(alpha)
            out_colors.append(alpha @ colors)
            out_trans.append(1.0 - alpha.sum(dim=1))
            continue
        # A pixel stops before the Gaussian that would take its transmittance to T_MIN or below.
        with torch.no_grad():
            include = torch.cumprod(1.0 - alpha, dim=1) > T_MIN
        alpha = torch.where(include, alpha, torch.zeros_like(alpha))
        trans_after = torch.cumprod(1.0 - alpha, dim=1)  # [p, K]
        trans_before = torch.cat([torch.ones_like(trans_after[:, :1]), trans_after[:, :-1]], dim=1)
        weights = alpha * trans_before
        out_colors.append(weights @ colors)
        out_trans.append(torch.prod(1.0 - alpha, dim=1))
    return torch.cat(out_colors), torch.cat(out_trans)


def composite_reference(
    means2d: Tensor,  # [I, N, 2]
    conics: Tensor,  # [I, N, 3]
    colors: Tensor,  # [I, N, D]
    opacities: Tensor,  # [I, N]
    depths: Tensor,  # [I, N], the compositing order (front first)
    visible: Tensor,  # [I, N] bool, False for culled Gaussians
    width: int,
    height: int,
    backgrounds: Optional[Tensor] = None,  # [I, D]
    chunk: int = 4096,
    blend: str = "alpha",
) -> Tuple[Tensor, Tensor]:
    """render_colors [I, H, W, D] and render_alphas [I, H, W, 1], gsplat's compositing rules
    (or, with blend="sum", GaussianImage's accumulation: sum(alpha c) and sum(alpha))."""
    renders, alphas = [], []
    for i in range(means2d.shape[0]):
        order = torch.argsort(depths[i].detach(), stable=True)
        order = order[visible[i][order]]
        rgb, trans = _composite_one_image(
            means2d[i, order], conics[i, order], colors[i, order], opacities[i, order], width, height, chunk, blend
        )
        if backgrounds is not None:
            rgb = rgb + trans[:, None] * backgrounds[i]
        renders.append(rgb.reshape(height, width, -1))
        alphas.append((1.0 - trans).reshape(height, width, 1))
    return torch.stack(renders), torch.stack(alphas)
