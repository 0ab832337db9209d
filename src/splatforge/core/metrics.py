"""Image quality metrics shared by fit, train and compress: PSNR and SSIM (Wang et al. 2004)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .ssim_cpu import fused_ssim


def psnr(image: Tensor, target: Tensor, max_value: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of images in [0, max_value]; inf for identical images."""
    mse = float(torch.mean((image.detach().double() - target.detach().double()) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(max_value**2 / mse)


def _gaussian_1d(size: int, sigma: float, like: Tensor) -> Tensor:
    x = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(image: Tensor, target: Tensor, window: int = 11, sigma: float = 1.5, max_value: float = 1.0) -> Tensor:
    """Mean SSIM of [..., H, W, C] images with an 11x11 Gaussian window (sigma 1.5), the
    convention of INRIA 3DGS and gsplat's fused SSIM ("same" padding). Differentiable."""
    if image.shape != target.shape:
        raise ValueError(f"ssim needs images of one shape, got {tuple(image.shape)} and {tuple(target.shape)}")
    if _fused_applies(image, target, window):
        x = image.reshape((-1,) + image.shape[-3:])
        y = target.reshape((-1,) + target.shape[-3:])
        c1, c2 = (0.01 * max_value) ** 2, (0.03 * max_value) ** 2
        return fused_ssim(x, y, _gaussian_1d(window, sigma, x), c1, c2)
    return _ssim_torch(image, target, window, sigma, max_value)


def _fused_applies(image: Tensor, target: Tensor, window: int) -> bool:
    """The Numba kernels cover float32 CPU images with an odd window, differentiable in the image
    only; everything else (float64, CUDA, a target that needs a gradient) takes the torch path."""
    return (image.dim() >= 3 and image.numel() > 0
            and image.dtype == target.dtype == torch.float32
            and image.device.type == target.device.type == "cpu"
            and image.layout == target.layout == torch.strided
            and isinstance(window, int) and window > 0 and window % 2 == 1
            and not (target.requires_grad and torch.is_grad_enabled()))


def _ssim_torch(image: Tensor, target: Tensor, window: int = 11, sigma: float = 1.5, max_value: float = 1.0) -> Tensor:
    """The reference: `ssim` with PyTorch convolutions and autograd, any dtype and device."""
    if image.shape != target.shape:
        raise ValueError(f"ssim needs images of one shape, got {tuple(image.shape)} and {tuple(target.shape)}")
    x = image.reshape((-1,) + image.shape[-3:]).permute(0, 3, 1, 2)  # [B, C, H, W]
    y = target.reshape((-1,) + target.shape[-3:]).permute(0, 3, 1, 2)
    channels = x.shape[1]
    # the Gaussian window is separable: filter rows then columns, all five moments in one call each
    g = _gaussian_1d(window, sigma, x)
    stacked = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    n = stacked.shape[1]
    blurred = F.conv2d(stacked, g.view(1, 1, 1, window).expand(n, 1, 1, window), padding=(0, window // 2), groups=n)
    blurred = F.conv2d(blurred, g.view(1, 1, window, 1).expand(n, 1, window, 1), padding=(window // 2, 0), groups=n)
    mu_x, mu_y, xx, yy, xy = blurred.split(channels, dim=1)
    var_x = xx - mu_x**2
    var_y = yy - mu_y**2
    cov = xy - mu_x * mu_y
    c1, c2 = (0.01 * max_value) ** 2, (0.03 * max_value) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean()
