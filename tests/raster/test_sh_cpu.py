"""The fused Numba SH kernel against core.sh.eval_sh (torch ops): values and both gradients, every
degree, including directions of any length and the zero direction."""

from __future__ import annotations

import pytest
import torch

from splatforge.core.sh import eval_sh, num_sh_bases
from splatforge.raster.sh_cpu import sh_colors


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
@pytest.mark.parametrize("stored_degree", [3])
def test_values_and_gradients_match_eval_sh(degree, stored_degree):
    g = torch.Generator().manual_seed(degree)
    c, n = 3, 200
    dirs = (torch.randn(c, n, 3, generator=g, dtype=torch.float64) * torch.rand(c, n, 1, generator=g) * 5)
    coeffs = torch.randn(n, num_sh_bases(stored_degree), 3, generator=g, dtype=torch.float64)
    dirs.requires_grad_(True)
    coeffs.requires_grad_(True)
    weights = torch.randn(c, n, 3, generator=g, dtype=torch.float64)
    ours = sh_colors(degree, dirs, coeffs)
    ref = eval_sh(degree, dirs, coeffs[None].expand(c, -1, -1, -1))
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=1e-10)
    got = torch.autograd.grad((ours * weights).sum(), (dirs, coeffs))
    want = torch.autograd.grad((ref * weights).sum(), (dirs, coeffs), allow_unused=True)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, torch.zeros_like(a) if b is None else b, atol=1e-10, rtol=1e-8)


def test_gradients_match_finite_differences():
    g = torch.Generator().manual_seed(7)
    dirs = torch.randn(2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    coeffs = torch.randn(5, 16, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda d, co: sh_colors(3, d, co), (dirs, coeffs))


def test_zero_direction_and_float32():
    dirs = torch.zeros(1, 2, 3)
    dirs[0, 1] = torch.tensor([0.0, 0.0, 2.0])
    coeffs = torch.randn(2, 16, 3)
    out = sh_colors(3, dirs, coeffs)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(out[0, 1], eval_sh(3, dirs[0, 1:], coeffs[1:])[0], atol=1e-5, rtol=1e-5)


def test_bad_shapes():
    with pytest.raises(ValueError, match="needs 16"):
        sh_colors(3, torch.zeros(1, 2, 3), torch.zeros(2, 9, 3))
    with pytest.raises(ValueError, match=r"\[C, N, 3\]"):
        sh_colors(1, torch.zeros(2, 3), torch.zeros(2, 4, 3))
