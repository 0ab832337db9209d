"""Shared scenes for the viewer tests: small, made here, deterministic."""

from __future__ import annotations

import math

import pytest
import torch

from splatforge.core.gaussians import Gaussians


def blob(n: int = 400, seed: int = 0, colour=(0.9, 0.1, 0.1), sh_degree: int = 1, spread: float = 0.3) -> Gaussians:
    """A ball of anisotropic Gaussians around the origin, one colour, some view-dependent SH."""
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=gen) * spread
    g = Gaussians.from_points(means, torch.tensor([colour]).repeat(n, 1), sh_degree=sh_degree, scale=0.05, opacity=0.9)
    g.scales = g.scales + torch.randn(n, 3, generator=gen) * 0.3
    g.quats = torch.randn(n, 4, generator=gen)
    g.shN = torch.randn(g.shN.shape, generator=gen) * 0.05
    g.opacities = g.opacities + torch.randn(n, generator=gen) * 0.5
    return g


@pytest.fixture
def red_blob() -> Gaussians:
    return blob()


def look_pose(eye, target, up=(0.0, 0.0, 1.0)):
    """(wxyz, position) of a camera at `eye` looking at `target`, built independently of the viewer code
    from splatforge.core.cameras.look_at."""
    from splatforge.core.cameras import look_at
    from splatforge.view.stills import pose_from_viewmat

    return pose_from_viewmat(look_at(eye, target, up, dtype=torch.float64).numpy())


FOV_50 = math.radians(50.0)
