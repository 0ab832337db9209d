"""Random scenes shared by the rasterizer tests."""

from __future__ import annotations

import math

import pytest
import torch


def make_scene(n=60, cameras=1, width=40, height=30, seed=0, sh_degree=None, dtype=torch.float32,
               batch_dims=(), channels=3):
    """N Gaussians in front of C cameras that look roughly at them; everything a test may perturb."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(batch_dims + shape, generator=g, dtype=dtype)

    def randn(*shape):
        return torch.randn(batch_dims + shape, generator=g, dtype=dtype)

    means = randn(n, 3) * 0.6 + torch.tensor([0.0, 0.0, 3.0], dtype=dtype)
    quats = randn(n, 4)
    scales = rand(n, 3) * 0.12 + 0.02
    opacities = rand(n) * 0.9 + 0.05
    if sh_degree is None:
        colors = rand(n, channels)
    else:
        colors = randn(n, (sh_degree + 1) ** 2, 3) * 0.4
    viewmats, ks = [], []
    for i in range(cameras):
        angle = 0.15 * i
        rot = torch.tensor([[math.cos(angle), 0, -math.sin(angle)], [0, 1, 0], [math.sin(angle), 0, math.cos(angle)]],
                           dtype=dtype)
        vm = torch.eye(4, dtype=dtype)
        vm[:3, :3] = rot
        vm[:3, 3] = torch.tensor([0.1 * i, -0.05 * i, 0.2 * i], dtype=dtype)
        viewmats.append(vm)
        f = 0.9 * width
        ks.append(torch.tensor([[f, 0, width / 2 + 0.3 * i], [0, f * 1.05, height / 2 - 0.2 * i], [0, 0, 1]],
                               dtype=dtype))
    viewmats = torch.stack(viewmats).expand(batch_dims + (cameras, 4, 4)).clone()
    ks = torch.stack(ks).expand(batch_dims + (cameras, 3, 3)).clone()
    return dict(means=means, quats=quats, scales=scales, opacities=opacities, colors=colors,
                viewmats=viewmats, Ks=ks, width=width, height=height)


@pytest.fixture
def scene():
    return make_scene()
