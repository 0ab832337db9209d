"""Fused SSIM on the CPU: Numba kernels for the forward value and the gradient w.r.t. the image.

Same definition as the torch reference in `splatforge.core.metrics` (separable Gaussian window,
zero "same" padding, mean of the SSIM map), computed in three row-parallel passes instead of the
reference's ten convolutions and their autograd graph:

1. rows: blur the five moments (x, y, x^2, y^2, xy) along each image row;
2. columns: finish the blur, evaluate the SSIM map and its partial derivatives with respect to the
   image's three blurred moments (mu_x, E[x^2], E[xy]), and blur those three maps along the rows;
3. (backward) finish the blur of the three derivative maps and combine them per pixel:
   dL/dx = blur(dS/dmu_x) + 2 x blur(dS/dE[x^2]) + y blur(dS/dE[xy]), times dL/dmean / N.
   The transpose of a zero-padded "same" correlation with a symmetric window is that correlation.

Images are worked on in their natural [B, H, W, C] memory order: a row is W*C interleaved values,
and a window tap k of the row blur is the offset (k - r) * C along it, so every inner loop runs with
unit stride and without branches (borders are clipped loop bounds). Each row is written by exactly
one task and the row sums are added in a fixed order: results do not depend on the thread count.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from splatforge.core.parallel import serialized

# FMA contraction and reciprocal division only: no 'nnan'/'ninf', NaN inputs must give NaN like the
# torch reference. No 'reassoc' in the pixel kernels, so a value is computed in one fixed order.
FASTMATH = {"contract", "arcp", "nsz"}
MOMENTS = 5  # x, y, x^2, y^2, xy
GRADS = 3  # dS/dmu_x, dS/dE[x^2], dS/dE[xy]
TWO = np.float32(2.0)


@numba.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _blur_row(src, dst, weights, channels):
    """dst = zero-padded "same" correlation of one interleaved row (W*C values) with the window,
    each channel with itself."""
    width = src.shape[0]
    radius = weights.shape[0] // 2
    dst[:] = 0
    for k in range(weights.shape[0]):
        offset = (k - radius) * channels
        lo = max(0, -offset)
        hi = min(width, width - offset)
        if hi <= lo:
            continue
        # slices, so the loop index starts at 0: no negative-index wraparound code, which would
        # keep LLVM from vectorizing the loop
        d = dst[lo:hi]
        s = src[lo + offset:hi + offset]
        w = weights[k]
        for j in range(hi - lo):
            d[j] += w * s[j]


@numba.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _blur_column(rows, height, t, weights, acc):
    """acc = zero-padded "same" correlation along the image's columns at row t of `rows`
    ([B*H, L] with images of `height` rows stacked), for all L values of the row at once."""
    radius = weights.shape[0] // 2
    first = (t // height) * height
    i = t - first
    acc[:] = 0
    for k in range(max(0, radius - i), min(weights.shape[0], height + radius - i)):
        src = rows[first + i + k - radius]
        w = weights[k]
        for j in range(acc.shape[0]):
            acc[j] += w * src[j]


@numba.njit(cache=True, fastmath={"contract", "reassoc"}, error_model="numpy")
def _row_sum(values):
    """Float64 sum of a float32 row; 'reassoc' lets LLVM vectorize it (same order on every run)."""
    total = 0.0
    for j in range(values.shape[0]):
        total += np.float64(values[j])
    return total


@serialized
@numba.njit(cache=True, parallel=True, fastmath=FASTMATH, error_model="numpy")
def blur_moment_rows(x, y, weights, channels, out):
    """out[t] = the row blurs of x, y, x^2, y^2, xy of image row t, side by side. x, y: [B*H, W*C];
    out: [B*H, 5*W*C]."""
    width = x.shape[1]
    for t in numba.prange(x.shape[0]):
        xr = x[t]
        yr = y[t]
        products = np.empty((3, width), dtype=np.float32)
        for j in range(width):
            products[0, j] = xr[j] * xr[j]
            products[1, j] = yr[j] * yr[j]
            products[2, j] = xr[j] * yr[j]
        row = out[t]
        _blur_row(xr, row[0:width], weights, channels)
        _blur_row(yr, row[width:2 * width], weights, channels)
        for m in range(3):
            _blur_row(products[m], row[(m + 2) * width:(m + 3) * width], weights, channels)


@serialized
@numba.njit(cache=True, parallel=True, fastmath=FASTMATH, error_model="numpy")
def ssim_rows(blurred_rows, height, weights, channels, c1, c2, with_grad, row_sums, grad_rows):
    """Finish the blur of the moments, evaluate the SSIM map and sum it per row into row_sums[t]
    (float64). With with_grad, also write the row blurs of dS/dmu_x, dS/dE[x^2], dS/dE[xy] side by
    side into grad_rows[t] ([B*H, 3*W*C]); otherwise grad_rows is not touched."""
    width = blurred_rows.shape[1] // MOMENTS
    for t in numba.prange(blurred_rows.shape[0]):
        acc = np.empty(MOMENTS * width, dtype=np.float32)
        _blur_column(blurred_rows, height, t, weights, acc)
        ssim_map = np.empty(width, dtype=np.float32)
        if with_grad:
            partials = np.empty((GRADS, width), dtype=np.float32)
            for j in range(width):
                mx = acc[j]
                my = acc[width + j]
                mx2 = mx * mx
                my2 = my * my
                mxy = mx * my
                a = TWO * mxy + c1
                b = TWO * (acc[4 * width + j] - mxy) + c2
                c = mx2 + my2 + c1
                d = (acc[2 * width + j] - mx2) + (acc[3 * width + j] - my2) + c2
                den = c * d
                s = (a * b) / den
                ssim_map[j] = s
                # S = AB / (CD): the partials of A, B, C, D w.r.t. mu_x are 2 mu_y, -2 mu_y, 2 mu_x,
                # -2 mu_x; D grows with E[x^2] (slope 1) and B with E[xy] (slope 2). No division by
                # A or B, which can be zero.
                inv_den = np.float32(1.0) / den
                partials[0, j] = TWO * inv_den * (my * (b - a) - mx * s * (d - c))
                partials[1, j] = -s / d
                partials[2, j] = TWO * a * inv_den
            row = grad_rows[t]
            for m in range(GRADS):
                _blur_row(partials[m], row[m * width:(m + 1) * width], weights, channels)
        else:
            for j in range(width):
                mx = acc[j]
                my = acc[width + j]
                mxy = mx * my
                num = (TWO * mxy + c1) * (TWO * (acc[4 * width + j] - mxy) + c2)
                den = (mx * mx + my * my + c1) * ((acc[2 * width + j] - mx * mx) + (acc[3 * width + j] - my * my) + c2)
                ssim_map[j] = num / den
        row_sums[t] = _row_sum(ssim_map)


@serialized
@numba.njit(cache=True, parallel=True, fastmath=FASTMATH, error_model="numpy")
def ssim_image_grad(grad_rows, x, y, height, weights, scale, out):
    """out = scale * (blur(dS/dmu_x) + 2 x blur(dS/dE[x^2]) + y blur(dS/dE[xy])), finishing the
    column blur of `grad_rows` from `ssim_rows`. x, y, out: [B*H, W*C]."""
    width = x.shape[1]
    for t in numba.prange(x.shape[0]):
        acc = np.empty(GRADS * width, dtype=np.float32)
        _blur_column(grad_rows, height, t, weights, acc)
        xr = x[t]
        yr = y[t]
        dst = out[t]
        for j in range(width):
            dst[j] = scale * (acc[j] + TWO * xr[j] * acc[width + j] + yr[j] * acc[2 * width + j])


def _rows(image: Tensor) -> Tensor:
    """[B, H, W, C] float32 tensor -> contiguous [B*H, W*C] tensor without grad (a view of the image
    when it is contiguous, so it shares its version counter: in-place edits before backward raise)."""
    b, h, w, c = image.shape
    return image.detach().contiguous().view(b * h, w * c)


def _forward(x: np.ndarray, y: np.ndarray, height: int, channels: int, weights: np.ndarray,
             c1: float, c2: float, with_grad: bool) -> tuple[float, np.ndarray | None]:
    rows, width = x.shape
    blurred = np.empty((rows, MOMENTS * width), dtype=np.float32)
    blur_moment_rows(x, y, weights, channels, blurred)
    row_sums = np.empty(rows, dtype=np.float64)
    grad_rows = np.empty((rows, GRADS * width) if with_grad else (1, 1), dtype=np.float32)
    ssim_rows(blurred, height, weights, channels, np.float32(c1), np.float32(c2), with_grad, row_sums, grad_rows)
    return float(row_sums.sum()) / x.size, (grad_rows if with_grad else None)


class _FusedSSIM(torch.autograd.Function):
    """Mean SSIM with a hand-derived backward for the image (the target gets no gradient)."""

    @staticmethod
    def forward(ctx, image: Tensor, target: Tensor, weights: np.ndarray, c1: float, c2: float) -> Tensor:
        _, height, _, channels = image.shape
        x, y = _rows(image), _rows(target)
        value, grad_rows = _forward(x.numpy(), y.numpy(), height, channels, weights, c1, c2, True)
        ctx.save_for_backward(x, y, torch.from_numpy(grad_rows))
        ctx.height, ctx.weights, ctx.image_shape = height, weights, image.shape
        return torch.tensor(value, dtype=torch.float32)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor):
        x, y, grad_rows = (t.numpy() for t in ctx.saved_tensors)
        out = np.empty_like(x)
        scale = np.float32(float(grad_output) / x.size)
        ssim_image_grad(grad_rows, x, y, ctx.height, ctx.weights, scale, out)
        return torch.from_numpy(out).view(ctx.image_shape), None, None, None, None


def fused_ssim(image: Tensor,  # [B, H, W, C] float32, CPU
               target: Tensor,  # [B, H, W, C] float32, CPU, no gradient
               weights: Tensor,  # [K] odd K, the symmetric 1D window (sums to 1)
               c1: float, c2: float) -> Tensor:
    """Mean SSIM map of image vs target, differentiable w.r.t. `image` only. Callers normally use
    `splatforge.core.metrics.ssim`, which checks the inputs and picks this path when it applies."""
    assert image.dim() == 4 and image.shape == target.shape, f"need two [B, H, W, C] images, got {tuple(image.shape)} and {tuple(target.shape)}"
    assert image.dtype == target.dtype == torch.float32, "fused SSIM works on float32 images"
    assert weights.dim() == 1 and weights.shape[0] % 2 == 1, f"need an odd 1D window, got {tuple(weights.shape)}"
    assert not (target.requires_grad and torch.is_grad_enabled()), "fused SSIM gives no gradient for the target"
    w = np.ascontiguousarray(weights.detach().to(torch.float32).numpy())
    if image.requires_grad and torch.is_grad_enabled():
        return _FusedSSIM.apply(image, target, w, c1, c2)
    _, height, _, channels = image.shape
    value, _ = _forward(_rows(image).numpy(), _rows(target).numpy(), height, channels, w, c1, c2, False)
    return torch.tensor(value, dtype=torch.float32)
