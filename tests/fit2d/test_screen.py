"""The fused screen-space op against the torch form, values and gradients."""

from __future__ import annotations

import torch

from splatforge.fit2d import Gaussians2D
from splatforge.fit2d.model import screen_space
from splatforge.fit2d.screen import screen_space_fused


def test_fused_screen_space_matches_torch():
    g = torch.Generator().manual_seed(0)
    n = 64
    fields = dict(means=torch.rand(n, 2, generator=g), log_scales=torch.randn(n, 2, generator=g) * 0.5 - 3,
                  rotations=torch.randn(n, generator=g) * 2, opacity_logits=torch.randn(n, generator=g) * 2)
    leaves = {k: v.clone().double().requires_grad_(True) for k, v in fields.items()}
    gauss = Gaussians2D(**leaves, colors=torch.zeros(n, 3, dtype=torch.float64), depths=torch.zeros(n, dtype=torch.float64))
    means_t, conics_t, _ = screen_space(gauss, 48)
    opac_t = torch.sigmoid(leaves["opacity_logits"])
    leaves32 = {k: v.clone().requires_grad_(True) for k, v in fields.items()}
    means_f, conics_f, opac_f, radii = screen_space_fused(leaves32["means"], leaves32["log_scales"],
                                                          leaves32["rotations"], leaves32["opacity_logits"], 48)
    torch.testing.assert_close(means_f.double(), means_t, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(conics_f.double(), conics_t, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(opac_f.double(), opac_t, rtol=1e-6, atol=1e-7)
    assert radii.dtype == torch.int32 and bool((radii > 0).all())
    w = [torch.randn(t.shape, generator=g, dtype=torch.float64) for t in (means_t, conics_t, opac_t)]
    loss_t = sum((a * b).sum() for a, b in zip((means_t, conics_t, opac_t), w))
    loss_f = sum((a.double() * b).sum() for a, b in zip((means_f, conics_f, opac_f), w))
    grads_t = torch.autograd.grad(loss_t, list(leaves.values()))
    grads_f = torch.autograd.grad(loss_f, list(leaves32.values()))
    for name, a, b in zip(leaves, grads_f, grads_t):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-4 * float(b.abs().max()), msg=name)


def test_hidden_gaussians_get_no_radius():
    zeros = torch.zeros(3, 2)
    logits = torch.tensor([-20.0, 0.0, 0.0])  # opacity far below 1/255
    means = torch.tensor([[0.5, 0.5], [float("nan"), 0.5], [0.2, 0.2]])
    _, _, _, radii = screen_space_fused(means, zeros - 3, torch.zeros(3), logits, 32)
    assert radii[0].tolist() == [0, 0] and radii[1].tolist() == [0, 0] and bool((radii[2] > 0).all())
