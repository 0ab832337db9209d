"""`rasterize_to_pixels`: differentiable compositing of projected (2D) Gaussians, gsplat's low-level op.

`rasterization()` calls it after projection and tile binning; `fit2d` calls it directly with 2D
Gaussians. The CPU path runs the Numba kernels of `kernels_cpu` inside a `torch.autograd.Function`.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from . import kernels_cpu


def _np32(t: Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).contiguous().numpy()


def _records(means2d: np.ndarray, conics: np.ndarray, colors: np.ndarray, opacities: np.ndarray) -> np.ndarray:
    """The kernels' per-Gaussian records (see `kernels_cpu.pack_gaussians`), each 64-byte aligned."""
    m, size = means2d.shape[0], kernels_cpu.RECORD
    buffer = np.empty(m * size + size, np.float32)
    skip = (-buffer.ctypes.data // 4) % size
    records = buffer[skip:skip + m * size].reshape(m, size)
    kernels_cpu.pack_gaussians(means2d, conics, colors, opacities, records)
    return records


def _run_offsets(isect_offsets: Tensor, n_isects: int) -> np.ndarray:
    flat = isect_offsets.detach().to("cpu", torch.int64).reshape(-1).numpy()
    return np.concatenate([flat, np.array([n_isects], dtype=np.int64)])


class _CompositeCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, backgrounds, width, height, tile_size,
                isect_offsets, flatten_ids, absgrad, accumulate):
        n_images, tile_height, tile_width = isect_offsets.shape
        depth = colors.shape[-1]
        ctx.shapes = (means2d.shape, conics.shape, colors.shape, opacities.shape)
        offsets = _run_offsets(isect_offsets, flatten_ids.numel())
        fids = flatten_ids.detach().to("cpu", torch.int32).contiguous().numpy()
        bg = _np32(backgrounds) if backgrounds is not None else np.zeros((0, depth), np.float32)
        m = opacities.numel()
        colors_np = _np32(colors).reshape(m, depth)
        records = _records(_np32(means2d).reshape(m, 2), _np32(conics).reshape(m, 3), colors_np,
                           _np32(opacities).reshape(m))
        arrays = (records, colors_np, bg)
        out_colors = np.empty((n_images, height, width, depth), np.float32)
        out_alphas = np.empty((n_images, height, width), np.float32)
        last_ids = np.empty((n_images, height, width), np.int32)
        geometry = (width, height, tile_size, tile_width, tile_height, offsets, fids)
        log_stride, lane_masks = 0, np.zeros(1, np.uint16)
        if accumulate or depth == 3:  # the lane kernels log which lanes took each Gaussian
            log_stride = tile_size * -(-tile_size // kernels_cpu.LANES)
            lane_masks = np.empty(fids.shape[0] * log_stride, np.uint16)
        kernels_cpu.composite_forward(
            *arrays, *geometry, out_colors, out_alphas, last_ids, accumulate, log_stride, lane_masks,
        )
        ctx.log = (log_stride, lane_masks)
        ctx.arrays, ctx.offsets, ctx.fids = arrays, offsets, fids
        ctx.geometry = (width, height, tile_size, tile_width, tile_height)
        ctx.out_alphas, ctx.last_ids = out_alphas, last_ids
        ctx.absgrad, ctx.accumulate = absgrad, accumulate
        ctx.means2d = means2d if absgrad else None
        ctx.has_bg = backgrounds is not None
        dtype, device = colors.dtype, colors.device
        return (torch.from_numpy(out_colors).to(device, dtype),
                torch.from_numpy(out_alphas)[..., None].to(device, dtype))

    @staticmethod
    def backward(ctx, v_render_colors, v_render_alphas):
        records, colors_np, bg = ctx.arrays
        n_isects, depth, m = ctx.fids.shape[0], colors_np.shape[1], records.shape[0]
        slots = np.zeros((n_isects, kernels_cpu.SLOT_COLOR + depth), np.float32)
        kernels_cpu.composite_backward(
            records, colors_np, bg, *ctx.geometry, ctx.offsets, ctx.fids,
            ctx.out_alphas, ctx.last_ids, _np32(v_render_colors), _np32(v_render_alphas[..., 0]),
            slots, ctx.accumulate, *ctx.log,
        )
        sums = {"xy": np.zeros((m, 2), np.float32), "conic": np.zeros((m, 3), np.float32),
                "opacity": np.zeros(m, np.float32), "absxy": np.zeros((m, 2), np.float32),
                "color": np.zeros((m, depth), np.float32)}
        kernels_cpu.sum_slots(ctx.fids, slots, *sums.values())
        like = v_render_colors
        shape_xy, shape_conic, shape_color, shape_opacity = ctx.shapes
        shapes = {"xy": shape_xy, "conic": shape_conic, "opacity": shape_opacity, "absxy": shape_xy,
                  "color": shape_color}
        grads = {k: torch.from_numpy(v).reshape(shapes[k]).to(like.device, like.dtype) for k, v in sums.items()}
        if ctx.absgrad:
            ctx.means2d.absgrad = grads["absxy"]
        v_bg = None
        if ctx.has_bg:
            t_final = torch.from_numpy(1.0 - ctx.out_alphas).to(like.device, like.dtype)
            v_bg = (v_render_colors * t_final[..., None]).sum(dim=(1, 2))
        return (grads["xy"], grads["conic"], grads["color"], grads["opacity"], v_bg,
                None, None, None, None, None, None, None)


def rasterize_to_pixels(
    means2d: Tensor,  # [I, N, 2] or packed [nnz, 2]
    conics: Tensor,  # [I, N, 3] or [nnz, 3]
    colors: Tensor,  # [I, N, D] or [nnz, D]
    opacities: Tensor,  # [I, N] or [nnz]
    image_width: int,
    image_height: int,
    tile_size: int,
    isect_offsets: Tensor,  # [I, tile_height, tile_width]
    flatten_ids: Tensor,  # [n_isects], indices into the flattened first dims of the above
    backgrounds: Optional[Tensor] = None,  # [I, D]
    absgrad: bool = False,
    blend: str = "alpha",
) -> Tuple[Tensor, Tensor]:
    """Composite 2D Gaussians front to back into I images of D channels on the CPU.

    Returns render_colors [I, H, W, D] and render_alphas [I, H, W, 1]. Differentiable with respect
    to means2d, conics, colors, opacities and backgrounds; with `absgrad=True`, backward also sets
    `means2d.absgrad`, the per-Gaussian sum of absolute per-pixel gradients. The kernels compute in
    float32 whatever the input dtype; results and gradients come back in the input's dtype.

    `blend="alpha"` (default) is gsplat's front-to-back compositing in the order of `flatten_ids`;
    `blend="sum"` is GaussianImage's order-free accumulation: colours sum(alpha_i c_i), alphas
    sum(alpha_i), no early stop and no background.
    """
    if blend not in ("alpha", "sum"):
        raise ValueError(f"blend must be 'alpha' or 'sum', got {blend!r}")
    if blend == "sum" and backgrounds is not None:
        raise ValueError("blend='sum' has no transmittance, so it takes no backgrounds")
    n_images = isect_offsets.shape[0]
    depth = colors.shape[-1]
    m = means2d.numel() // 2
    checks = [("means2d", means2d, (m, 2)), ("conics", conics, (m, 3)),
              ("colors", colors, (m, depth)), ("opacities", opacities, (m,))]
    for name, t, shape in checks:
        if t.reshape(-1).shape[0] != int(np.prod(shape)):
            raise ValueError(f"{name} must hold {shape} values in the flattened layout of means2d, got {tuple(t.shape)}")
    if backgrounds is not None and tuple(backgrounds.shape) != (n_images, depth):
        raise ValueError(f"backgrounds must be [{n_images}, {depth}], got {tuple(backgrounds.shape)}")
    return _CompositeCPU.apply(
        means2d, conics, colors, opacities, backgrounds, image_width, image_height, tile_size, isect_offsets,
        flatten_ids, absgrad, blend == "sum",
    )
