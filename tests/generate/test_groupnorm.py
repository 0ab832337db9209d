"""The channels-last GroupNorm kernel against float64 GroupNorm: random, shifted, constant and tiny
inputs, uneven chunks; other inputs go to the module unchanged."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from splatforge.generate.lgm.groupnorm import applies, group_norm


def module(channels: int, groups: int, affine: bool = True, seed: int = 0) -> nn.GroupNorm:
    norm = nn.GroupNorm(groups, channels, eps=1e-5, affine=affine)
    if affine:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            norm.weight.copy_(torch.randn(channels, generator=gen))
            norm.bias.copy_(torch.randn(channels, generator=gen))
    return norm


def reference(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    weight = norm.weight.double() if norm.affine else None
    bias = norm.bias.double() if norm.affine else None
    return F.group_norm(x.double(), norm.num_groups, weight, bias, norm.eps)


@pytest.mark.parametrize("shape,groups", [((2, 64, 32, 32), 32), ((4, 32, 7, 9), 8), ((1, 8, 1, 1), 4),
                                          ((3, 96, 130, 3), 32), ((4, 64, 256, 16), 32)])
@pytest.mark.parametrize("mean", [0.0, 5.0, 1000.0])
def test_channels_last_inputs_match_float64_group_norm(shape, groups, mean):
    gen = torch.Generator().manual_seed(1)
    x = (torch.randn(shape, generator=gen) * 3 + mean).contiguous(memory_format=torch.channels_last)
    norm = module(shape[1], groups)
    with torch.no_grad():
        assert applies(x)
        got = group_norm(norm, x)
        contiguous_error = (norm(x.contiguous()).double() - reference(norm, x)).abs().max()
    assert got.is_contiguous(memory_format=torch.channels_last) and got.dtype == torch.float32
    error = (got.double() - reference(norm, x)).abs().max()
    # as precise as PyTorch's contiguous kernel (float32 rounding of x itself sets the floor)
    assert error <= max(2 * contiguous_error, 1e-5 * max(1.0, mean / 3))


def test_a_constant_group_and_no_affine_parameters():
    x = torch.randn(2, 16, 5, 5)
    x[:, :4] = 7.0  # group 0 of 4 is constant: normalized to 0, up to the fused multiply-add's
    x = x.contiguous(memory_format=torch.channels_last)  # rounding of 7 * rstd (rstd = eps ** -0.5)
    norm = module(16, 4, affine=False)
    with torch.no_grad():
        got = group_norm(norm, x)
    assert got[:, :4].abs().max() <= 2.0**-23 * 7.0 * norm.eps**-0.5
    assert (got[:, 4:].double() - reference(norm, x)[:, 4:]).abs().max() < 1e-5


def test_other_inputs_go_to_the_module_itself():
    norm = module(32, 8)
    x = torch.randn(2, 32, 6, 6)
    with torch.no_grad():
        assert not applies(x)  # contiguous
        assert torch.equal(group_norm(norm, x), norm(x))
        assert not applies(x.double().contiguous(memory_format=torch.channels_last))
    x_cl = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    assert not applies(x_cl)  # gradients wanted: the module, so they flow
    group_norm(norm, x_cl).sum().backward()
    assert x_cl.grad is not None and norm.weight.grad is not None
