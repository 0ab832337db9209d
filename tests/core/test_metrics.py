"""SSIM against a dense, obviously-right 11x11 window implementation; PSNR on known values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from splatforge.core.metrics import psnr, ssim


def dense_ssim(a: torch.Tensor, b: torch.Tensor, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = a.reshape((-1,) + a.shape[-3:]).permute(0, 3, 1, 2).double()
    y = b.reshape((-1,) + b.shape[-3:]).permute(0, 3, 1, 2).double()
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    w2 = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    w2 = (w2 / w2.sum()).expand(x.shape[1], 1, size, size)
    conv = lambda t: F.conv2d(t, w2, padding=size // 2, groups=x.shape[1])  # noqa: E731
    mx, my = conv(x), conv(y)
    vx, vy, cxy = conv(x * x) - mx**2, conv(y * y) - my**2, conv(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return (((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean()


@pytest.mark.parametrize("shape", [(1, 32, 40, 3), (2, 17, 23, 3), (12, 11, 1)])
def test_ssim_matches_the_dense_window(shape):
    g = torch.Generator().manual_seed(0)
    a = torch.rand(shape, generator=g)
    b = (a + 0.2 * torch.randn(shape, generator=g)).clamp(0, 1)
    assert float(ssim(a, b)) == pytest.approx(float(dense_ssim(a, b)), abs=1e-5)
    assert float(ssim(a, a)) == pytest.approx(1.0, abs=1e-6)


def test_ssim_gradient_matches_the_dense_window():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(1, 20, 24, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.rand(1, 20, 24, 3, generator=g, dtype=torch.float64)
    (ga,) = torch.autograd.grad(ssim(a, b), a)
    (gd,) = torch.autograd.grad(dense_ssim(a, b), a)
    torch.testing.assert_close(ga, gd, atol=1e-9, rtol=1e-6)


def test_psnr_known_values():
    a = torch.zeros(4, 4, 3)
    assert psnr(a, a) == math.inf
    assert psnr(a, a + 0.1) == pytest.approx(20.0)
