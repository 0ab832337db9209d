"""The fused Numba SSIM against the torch reference (`_ssim_torch`, float64 autograd as the oracle)."""

from __future__ import annotations

import math

import numba
import pytest
import torch

from splatforge.core.metrics import _gaussian_1d, _ssim_torch, ssim
from splatforge.core.ssim_cpu import fused_ssim


def image_pair(shape, seed=0, noise=0.2, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(shape, generator=g) * scale
    image = (target + noise * scale * torch.randn(shape, generator=g)).clamp(0, scale)
    return image, target


def reference(image, target, window=11, sigma=1.5, max_value=1.0):
    """Value and image gradient of the torch path in float64."""
    x = image.detach().double().requires_grad_(True)
    value = _ssim_torch(x, target.detach().double(), window, sigma, max_value)
    (grad,) = torch.autograd.grad(value, x)
    return float(value.detach()), grad


def fused(image, target, window=11, sigma=1.5, max_value=1.0):
    """Value and image gradient of the public `ssim`, checking that it took the fused path."""
    x = image.detach().clone().requires_grad_(True)
    value = ssim(x, target, window, sigma, max_value)
    assert type(value.grad_fn).__name__ == "_FusedSSIMBackward"
    (grad,) = torch.autograd.grad(value, x)
    return float(value.detach()), grad


def assert_matches_reference(image, target, **kwargs):
    value, grad = fused(image, target, **kwargs)
    ref_value, ref_grad = reference(image, target, **kwargs)
    assert value == pytest.approx(ref_value, abs=1e-5)
    assert grad.shape == image.shape and grad.dtype == torch.float32
    scale = float(ref_grad.abs().max())
    assert scale > 0
    assert float((grad.double() - ref_grad).abs().max()) <= 1e-4 * scale


@pytest.mark.parametrize("shape", [
    (256, 256, 3), (37, 53, 3), (1, 1, 3), (5, 7, 3), (5, 7, 1), (37, 53, 1), (23, 19, 4),
    (2, 24, 31, 3), (2, 3, 9, 10, 1),
])
def test_fused_matches_the_torch_reference(shape):
    image, target = image_pair(shape, seed=sum(shape))
    assert_matches_reference(image, target)


@pytest.mark.parametrize("window, sigma", [(7, 1.0), (3, 0.8), (1, 1.5), (15, 2.5), (31, 4.0)])
def test_other_odd_windows(window, sigma):
    image, target = image_pair((20, 26, 3), seed=window)
    assert_matches_reference(image, target, window=window, sigma=sigma)


def test_max_value_other_than_one():
    image, target = image_pair((33, 29, 3), seed=3, scale=255.0)
    assert_matches_reference(image, target, max_value=255.0)


def test_non_contiguous_inputs():
    image, target = image_pair((3, 40, 30, 4), seed=4)
    # channels-first storage seen as HWC, and a strided crop
    image_view = image.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)[:, 3:37:2, 1:, :3]
    target_view = target[:, 3:37:2, 1:, :3]
    assert not image_view.is_contiguous() and not target_view.is_contiguous()
    assert_matches_reference(image_view, target_view)
    leaf = image.clone().requires_grad_(True)
    ssim(leaf[:, 3:37:2, 1:, :3], target_view).backward()
    assert leaf.grad[:, 3:37:2, 1:, :3].abs().sum() > 0
    assert leaf.grad[:, :, 0].abs().sum() == 0 and leaf.grad[..., 3].abs().sum() == 0


def test_identical_images_give_one_and_no_gradient():
    image, _ = image_pair((21, 17, 3), seed=5)
    value, grad = fused(image, image.clone())
    assert value == pytest.approx(1.0, abs=1e-6)
    assert float(grad.abs().max()) < 1e-6


def test_no_grad_value_matches_the_graph_value():
    image, target = image_pair((2, 30, 20, 3), seed=6)
    with torch.no_grad():
        plain = ssim(image, target)
    assert plain.grad_fn is None and plain.dtype == torch.float32 and plain.dim() == 0
    assert float(plain) == fused(image, target)[0]


def test_nan_input_gives_nan_like_the_torch_path():
    image, target = image_pair((30, 34, 3), seed=7)
    image[5, 6, 1] = math.nan
    x = image.clone().requires_grad_(True)
    value = ssim(x, target)
    assert type(value.grad_fn).__name__ == "_FusedSSIMBackward"
    value.backward()
    ref_value, ref_grad = reference(image, target)
    assert math.isnan(float(value.detach())) and math.isnan(ref_value)
    # NaN where the reference's gradient is NaN (the NaN's channel, two window radii around it)
    assert torch.equal(x.grad.isnan(), ref_grad.isnan())
    finite = ~ref_grad.isnan()
    assert float((x.grad.double() - ref_grad)[finite].abs().max()) <= 1e-4 * float(ref_grad[finite].abs().max())


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="one shape"):
        ssim(torch.rand(8, 8, 3), torch.rand(8, 9, 3))


def test_other_inputs_keep_the_torch_path():
    image, target = image_pair((10, 12, 3), seed=8)
    x = image.double().requires_grad_(True)
    assert type(ssim(x, target.double()).grad_fn).__name__ != "_FusedSSIMBackward"
    t = target.clone().requires_grad_(True)
    value = ssim(image.clone().requires_grad_(True), t)
    assert type(value.grad_fn).__name__ != "_FusedSSIMBackward"
    value.backward()
    assert t.grad is not None and t.grad.abs().sum() > 0
    # an even window changes the output size of the reference's convolutions: it keeps that path
    y = image.clone().requires_grad_(True)
    assert type(ssim(y, target, window=4).grad_fn).__name__ != "_FusedSSIMBackward"


def test_finite_differences_of_the_fused_gradient():
    image, target = image_pair((6, 5, 2), seed=9, noise=0.3)
    x = image.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(ssim(x, target), x)
    eps = 1e-2
    numeric = torch.empty_like(image)
    with torch.no_grad():
        for index in range(image.numel()):
            plus, minus = image.clone(), image.clone()
            plus.view(-1)[index] += eps
            minus.view(-1)[index] -= eps
            numeric.view(-1)[index] = (float(ssim(plus, target)) - float(ssim(minus, target))) / (2 * eps)
    scale = float(numeric.abs().max())
    torch.testing.assert_close(grad, numeric, atol=2e-2 * scale, rtol=2e-2)


def test_results_do_not_depend_on_the_thread_count():
    image, target = image_pair((2, 41, 37, 3), seed=10)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = fused(image, target)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = fused(image, target)
    finally:
        numba.set_num_threads(before)
    assert one[0] == many[0]
    assert torch.equal(one[1], many[1])


def test_in_place_edit_before_backward_is_caught():
    image, target = image_pair((9, 9, 3), seed=11)
    leaf = image.clone().requires_grad_(True)
    x = leaf * 1.0
    value = ssim(x, target)
    with torch.no_grad():
        x.add_(0.1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        value.backward()


def test_fused_ssim_direct_call_and_gradient_scale():
    image, target = image_pair((1, 16, 18, 3), seed=12)
    weights = _gaussian_1d(11, 1.5, image)
    x = image.clone().requires_grad_(True)
    (3.0 * fused_ssim(x, target, weights, 1e-4, 9e-4)).backward()
    _, ref_grad = reference(image, target)
    torch.testing.assert_close(x.grad.double(), 3.0 * ref_grad, atol=1e-4 * float(3.0 * ref_grad.abs().max()), rtol=0)
