"""Vectorized unprojection: ml-sharp's final Gaussians, and the eigen-solver on hard cases."""

from __future__ import annotations

import numpy as np
import torch

from splatforge.predict.api import unproject
from splatforge.predict.sharp import SharpGaussians
from splatforge.predict.unproject import (
    covariances,
    matrices_to_quaternions,
    quaternions_to_matrices,
    symmetric_eigen_3x3,
    transform_gaussians,
    transform_gaussians_cpu,
)


def test_unprojection_matches_ml_sharp(reference):
    raw = SharpGaussians(*(torch.from_numpy(reference[f"raw_{f}"]) for f in SharpGaussians._fields))
    image = reference["image"]
    pred = unproject(raw, float(reference["f_px"]), (image.shape[1], image.shape[0]), 128)
    np.testing.assert_allclose(pred.means.numpy(), reference["final_mean_vectors"][0], atol=1e-4, rtol=0)
    np.testing.assert_allclose(pred.scales.numpy(), reference["final_singular_values"][0], atol=1e-6, rtol=1e-4)
    np.testing.assert_allclose(pred.colors.numpy(), reference["final_colors"][0], atol=1e-6)
    np.testing.assert_allclose(pred.opacities.numpy(), reference["final_opacities"][0], atol=1e-6)
    # Rotations are unique only up to the eigenvectors' signs: compare covariances.
    cov = covariances(pred.quats.double(), pred.scales.double()).numpy()
    np.testing.assert_allclose(cov, reference["final_covariances"][0], atol=1e-7, rtol=1e-4)
    assert (pred.quats[:, 0] >= 0).all()
    assert torch.allclose(pred.quats.norm(dim=-1), torch.ones(pred.num_gaussians), atol=1e-5)


def random_symmetric(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, 3, 3, generator=gen, dtype=torch.float64)
    return a + a.transpose(1, 2)


def test_eigen_solver_on_random_and_degenerate_matrices():
    c = random_symmetric(500, 0)
    q = torch.randn(300, 4, dtype=torch.float64)
    r = quaternions_to_matrices(q)
    # Repeated eigenvalues (pairs and all three), zero matrices, extreme scale ratios.
    diag = torch.tensor([[2.0, 2.0, 1.0], [1.0, 3.0, 3.0], [5.0, 5.0, 5.0], [0.0, 0.0, 0.0],
                         [1e-8, 1.0, 1e4]], dtype=torch.float64).repeat(60, 1)
    degenerate = (r * diag[:, None, :]) @ r.transpose(1, 2)
    mats = torch.cat([c, degenerate, torch.diag_embed(diag)])
    values, vectors = symmetric_eigen_3x3(mats)
    rebuilt = (vectors * values[:, None, :]) @ vectors.transpose(1, 2)
    scale = mats.abs().amax(dim=(1, 2)).clamp_min(1)
    assert ((rebuilt - mats).abs().amax(dim=(1, 2)) / scale).max() < 1e-9
    assert torch.allclose(vectors.transpose(1, 2) @ vectors, torch.eye(3, dtype=torch.float64).expand_as(vectors), atol=1e-9)
    assert torch.allclose(torch.linalg.det(vectors), torch.ones(len(mats), dtype=torch.float64), atol=1e-9)
    assert (values[:, :-1] >= values[:, 1:] - 1e-9 * scale[:, None]).all()
    np.testing.assert_allclose(values.numpy(), torch.linalg.eigvalsh(mats).flip(-1).numpy(), atol=1e-9 * 1e4)


def test_quaternion_round_trip():
    q = torch.randn(1000, 4, dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True)
    back = matrices_to_quaternions(quaternions_to_matrices(q))
    same = torch.where(q[:, :1] < 0, -q, q)
    assert torch.allclose(back, same, atol=1e-12)


def test_transform_gaussians_with_a_general_affine_map():
    gen = torch.Generator().manual_seed(3)
    means = torch.randn(200, 3, generator=gen)
    quats = torch.randn(200, 4, generator=gen)
    scales = torch.rand(200, 3, generator=gen) + 0.01
    linear = torch.tensor([[0.5, 0.2, 0.0], [-0.1, 1.5, 0.3], [0.0, 0.4, 2.0]])
    offset = torch.tensor([1.0, -2.0, 3.0])
    new_means, new_quats, new_scales = transform_gaussians(means, quats, scales, linear, offset)
    torch.testing.assert_close(new_means, means @ linear.T + offset)
    lin = linear.double()
    expected = lin @ covariances(quats.double(), scales.double()) @ lin.T
    torch.testing.assert_close(covariances(new_quats.double(), new_scales.double()), expected,
                               atol=1e-6, rtol=1e-5)


def test_numba_kernel_matches_the_torch_reference():
    """transform_gaussians_cpu (Numba, per Gaussian) against transform_gaussians (torch), on
    network-like Gaussians and on the cases that break eigen-solvers: repeated and zero scales,
    extreme ratios, identity and negative-w quaternions, and a general affine map."""
    gen = torch.Generator().manual_seed(7)
    n = 3000
    means = torch.randn(n, 3, generator=gen)
    quats = torch.randn(n, 4, generator=gen)
    scales = 0.001 + 0.01 * torch.rand(n, 3, generator=gen)
    hard = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.5], [2.0, 1.0, 1.0], [1e-4, 1.0, 1.0],
                         [1e-4, 1e-4, 1.0], [0.0, 1.0, 2.0], [3.0, 1e-3, 1e-5]])
    scales[: len(hard) * 100] = hard.repeat_interleave(100, 0)
    quats[:50] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    quats[50:100] = torch.tensor([-0.5, 0.5, -0.5, 0.5])
    for linear, offset in [
        (torch.diag(torch.tensor([0.55, 0.37, 1.0], dtype=torch.float64)), torch.zeros(3)),
        (torch.tensor([[0.5, 0.2, 0.0], [-0.1, 1.5, 0.3], [0.0, 0.4, 2.0]]),
         torch.tensor([1.0, -2.0, 3.0])),
    ]:
        expected = transform_gaussians(means, quats, scales, linear, offset)
        got = transform_gaussians_cpu(means, quats, scales, linear, offset)
        assert all(g.dtype == torch.float32 and g.shape == e.shape for g, e in zip(got, expected))
        torch.testing.assert_close(got[0], expected[0], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(got[2], expected[2], atol=1e-7, rtol=1e-5)
        assert (got[1][:, 0] >= 0).all()
        torch.testing.assert_close(got[1].norm(dim=-1), torch.ones(n), atol=1e-6, rtol=0)
        cov_got = covariances(got[1].double(), got[2].double())
        cov_expected = covariances(expected[1].double(), expected[2].double())
        scale = cov_expected.abs().amax(dim=(1, 2), keepdim=True)
        assert ((cov_got - cov_expected).abs() / scale).max() < 1e-5
    # float64 in, float64 out.
    got64 = transform_gaussians_cpu(means.double(), quats.double(), scales.double(), linear, offset)
    assert got64[0].dtype == torch.float64
