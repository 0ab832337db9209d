import pytest
import torch

from splatforge.core.gaussians import Gaussians


def make_gaussians(n: int, sh_degree: int = 3, seed: int = 0) -> Gaussians:
    """Random Gaussians inside every format's range (|x| < 50, log scales -6..1, SH in [-1, 1])."""
    gen = torch.Generator().manual_seed(seed)
    k = (sh_degree + 1) ** 2 - 1
    r = lambda *s: torch.rand(*s, generator=gen)  # noqa: E731
    return Gaussians(
        means=(r(n, 3) - 0.5) * 100,
        scales=r(n, 3) * 7 - 6,
        quats=torch.randn(n, 4, generator=gen),
        opacities=(r(n) - 0.5) * 8,
        sh0=(r(n, 1, 3) - 0.5) * 3,
        shN=(r(n, k, 3) - 0.5) * 1.6,
    )


def quat_angle_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Largest absolute difference between unit quaternions, sign-insensitive."""
    a = torch.nn.functional.normalize(a, dim=-1)
    b = torch.nn.functional.normalize(b, dim=-1)
    return torch.minimum((a - b).abs().amax(-1), (a + b).abs().amax(-1))


@pytest.fixture
def gaussians_factory():
    return make_gaussians


