"""The decoder's upsampling conv without the upsampling, against conv(nearest 2x(x))."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from splatforge.generate.lgm.unet import upsample_conv


def reference(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


@pytest.mark.parametrize("shape", [(2, 8, 5, 7), (1, 3, 1, 1), (4, 32, 16, 16)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_it_equals_the_conv_of_the_upsampled_input(shape, channels_last, bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(shape[1], 6, kernel_size=3, padding=1, bias=bias).double()
    x = torch.randn(shape, dtype=torch.float64)
    if channels_last:
        conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        got = upsample_conv(conv, x)
        want = reference(conv, x)
    assert got.shape == want.shape
    assert got.is_contiguous(memory_format=torch.channels_last) == x.is_contiguous(memory_format=torch.channels_last)
    assert (got - want).abs().max() < 1e-12


def test_gradients_flow_as_through_the_upsampled_conv():
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 5, kernel_size=3, padding=1).double()
    x = torch.randn(2, 4, 6, 3, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, 5, 12, 6, dtype=torch.float64)
    grads = []
    for fn in (upsample_conv, reference):
        conv.zero_grad()
        x.grad = None
        (fn(conv, x) * weights).sum().backward()
        grads.append((x.grad.clone(), conv.weight.grad.clone(), conv.bias.grad.clone()))
    for a, b in zip(*grads):
        assert (a - b).abs().max() < 1e-10
