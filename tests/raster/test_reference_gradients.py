"""The torch reference's autograd gradients against central finite differences, in float64."""

from __future__ import annotations

import pytest
import torch

import splatforge
from .conftest import make_scene


def _loss_fn(scene, weights, **kwargs):
    def loss(**overrides):
        rgb, alpha, _ = splatforge.rasterization(**{**scene, **kwargs, **overrides}, backend="torch")
        return (rgb * weights[0]).sum() + (alpha * weights[1]).sum()
    return loss


def _check_fd(loss, name, value, eps=1e-6, n_checks=12, seed=0):
    value = value.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(**{name: value}), value)
    g = torch.Generator().manual_seed(seed)
    flat = value.detach().reshape(-1)
    # check the entries with the largest gradients plus a few random ones
    idx = torch.cat([grad.abs().reshape(-1).topk(min(n_checks, flat.numel())).indices,
                     torch.randint(flat.numel(), (4,), generator=g)])
    for i in idx.tolist():
        plus, minus = flat.clone(), flat.clone()
        plus[i] += eps
        minus[i] -= eps
        fd = (loss(**{name: plus.reshape(value.shape)}) - loss(**{name: minus.reshape(value.shape)})) / (2 * eps)
        an = grad.reshape(-1)[i]
        assert abs(float(fd - an)) <= 1e-5 + 1e-4 * abs(float(an)), f"{name}[{i}]: fd {float(fd):.6g} vs autograd {float(an):.6g}"


@pytest.mark.parametrize("name", ["means", "quats", "scales", "opacities", "colors", "backgrounds"])
def test_reference_gradients_match_finite_differences(name):
    scene = make_scene(n=6, width=12, height=10, seed=11, dtype=torch.float64, sh_degree=2)
    scene["scales"] = scene["scales"] * 3
    scene["opacities"] = scene["opacities"] * 0.8
    bg = torch.tensor([[0.3, 0.6, 0.1]], dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    weights = (torch.randn(1, 10, 12, 3, generator=gen, dtype=torch.float64),
               torch.randn(1, 10, 12, 1, generator=gen, dtype=torch.float64))
    loss = _loss_fn(scene, weights, sh_degree=2, backgrounds=bg)
    value = bg if name == "backgrounds" else scene[name]
    _check_fd(loss, name, value)


def test_reference_covars_gradients_match_finite_differences():
    scene = make_scene(n=5, width=12, height=10, seed=4, dtype=torch.float64)
    from splatforge.raster.project import covariances

    covars = covariances(scene["quats"], scene["scales"] * 3)
    scene = {**scene, "quats": None, "scales": None, "covars": covars}
    gen = torch.Generator().manual_seed(2)
    weights = (torch.randn(1, 10, 12, 3, generator=gen, dtype=torch.float64),
               torch.randn(1, 10, 12, 1, generator=gen, dtype=torch.float64))
    loss = _loss_fn(scene, weights)
    # perturb symmetric pairs together so the covariance stays symmetric
    def sym_loss(covars):
        return loss(covars=0.5 * (covars + covars.transpose(-1, -2)))
    _check_fd(lambda **kw: sym_loss(kw["covars"]), "covars", covars)
