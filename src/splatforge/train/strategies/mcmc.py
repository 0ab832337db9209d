"""The MCMC strategy of "3D Gaussian Splatting as Markov Chain Monte Carlo" (Kheradmand et al.),
with gsplat 1.5.3's defaults: relocate dead Gaussians, grow 5% per refine up to a cap, and add
noise to positions after every step."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict

import numba
import numpy as np
import torch
from torch import Tensor

from ...core.parallel import serialized
from ...raster.project import covariances
from ...raster.project_cpu import CHUNK, quat_rotation, world_covariance
from .ops import Optimizers, Params, relocate, sample_add


def relocation_values(opacities: Tensor, scales: Tensor, copies: Tensor, n_max: int = 51) -> tuple[Tensor, Tensor]:
    """Opacity and scale for each of `copies` Gaussians that replace one (Eq. 9 of the paper):
    o' = 1 - (1 - o)^(1/n), and scales shrunk so the summed rendered mass matches the original's.
    opacities [S] and scales [S, 3] are activated; copies [S] counts the original too (>= 1)."""
    n = copies.clamp(1, n_max).to(opacities.dtype)
    new_o = 1.0 - torch.pow(1.0 - opacities, 1.0 / n)
    denom = torch.zeros_like(opacities)
    for i in range(1, n_max + 1):
        active = n >= i
        if not bool(active.any()):
            break
        for k in range(i):
            term = math.comb(i - 1, k) * (-1.0) ** k / math.sqrt(k + 1) * torch.pow(new_o, k + 1)
            denom = denom + torch.where(active, term, torch.zeros_like(term))
    return new_o, scales * (opacities / denom)[:, None]


NOISE_GATE_FLOOR = 1e-10
NOISE_STEEPNESS, NOISE_CENTRE = 100.0, 0.995  # gate = sigmoid(k ((1 - opacity) - x0)), as gsplat


@serialized
@numba.njit(cache=True, parallel=True, error_model="numpy")
def _move_by_noise(means, quats, log_scales, opacity_logits, noise, scale):
    """means += Sigma (gate * scale * noise) per Gaussian, in place, where the gate lets noise through
    (`_inject_noise`'s torch form in one pass: at 50k Gaussians 4 ms of torch ops become 0.3 ms)."""
    n = means.shape[0]
    for task in numba.prange((n + CHUNK - 1) // CHUNK):
        _move_chunk(task * CHUNK, min(task * CHUNK + CHUNK, n), means, quats, log_scales, opacity_logits, noise, scale)


@numba.njit(cache=True, error_model="numpy")
def _move_chunk(first, last, means, quats, log_scales, opacity_logits, noise, scale):
    for i in range(first, last):
        _move_one(i, means, quats, log_scales, opacity_logits, noise, scale)


@numba.njit(cache=True, inline="always")
def _move_one(i, means, quats, log_scales, opacity_logits, noise, scale):
    opacity = 1.0 / (1.0 + math.exp(-np.float64(opacity_logits[i])))
    gate = 1.0 / (1.0 + math.exp(-NOISE_STEEPNESS * ((1.0 - opacity) - NOISE_CENTRE)))
    if not gate > NOISE_GATE_FLOOR:
        return
    rot = quat_rotation(np.float64(quats[i, 0]), np.float64(quats[i, 1]), np.float64(quats[i, 2]),
                        np.float64(quats[i, 3]))[5]
    s00, s01, s02, s11, s12, s22 = world_covariance(rot, math.exp(log_scales[i, 0]), math.exp(log_scales[i, 1]),
                                                    math.exp(log_scales[i, 2]))[1]
    f = gate * scale
    nx, ny, nz = noise[i, 0] * f, noise[i, 1] * f, noise[i, 2] * f
    means[i, 0] += s00 * nx + s01 * ny + s02 * nz
    means[i, 1] += s01 * nx + s11 * ny + s12 * nz
    means[i, 2] += s02 * nx + s12 * ny + s22 * nz


@dataclass
class MCMCStrategy:
    """Relocation and growth every `refine_every` steps in (`refine_start_iter`, `refine_stop_iter`),
    and position noise (scaled by each Gaussian's covariance, large only for nearly transparent
    ones) after every step. Needs the means' learning rate of the step (`lr`). A trainer whose
    schedule is fitted to a time budget passes a `plan` (`train.schedule.StepPlan`) that says when
    to refine instead of the step numbers."""

    cap_max: int = 1_000_000  # never more Gaussians than this
    noise_lr: float = 5e5  # position noise scale, times the means' learning rate
    refine_start_iter: int = 500
    refine_stop_iter: int = 25_000
    refine_every: int = 100
    min_opacity: float = 0.005  # Gaussians at or below this opacity are dead and get relocated

    def initialize_state(self, seed: int = 0) -> Dict[str, Any]:
        return {"generator": torch.Generator().manual_seed(seed)}

    def step_pre_backward(self, params: Params, optimizers: Optimizers, state: Dict[str, Any], step: int,
                          info: Dict[str, Any]) -> None:
        """MCMC reads no screen-space gradients."""

    @torch.no_grad()
    def step_post_backward(self, params: Params, optimizers: Optimizers, state: Dict[str, Any], step: int,
                           info: Dict[str, Any], lr: float, plan=None) -> Dict[str, int]:
        counts = {"relocated": 0, "added": 0}
        gen = state["generator"]
        if plan is None:
            refine = self.refine_start_iter < step < self.refine_stop_iter and step % self.refine_every == 0
        else:
            refine = plan.refine
        if refine:
            counts["relocated"] = self._relocate(params, optimizers, gen)
            counts["added"] = self._grow(params, optimizers, gen)
        self._inject_noise(params, lr * self.noise_lr, gen)
        return counts

    def _sample(self, params: Params, candidates: Tensor, n: int, gen: torch.Generator):
        """n indices drawn from `candidates` by opacity, and the relocated opacity logits and log scales."""
        opacities = torch.sigmoid(params["opacities"].detach())
        probs = opacities[candidates]
        if float(probs.sum()) <= 0:
            probs = torch.ones_like(probs)
        sampled = candidates[torch.multinomial(probs.cpu(), n, replacement=True, generator=gen).to(candidates.device)]
        copies = torch.bincount(sampled, minlength=opacities.shape[0])[sampled] + 1
        new_o, new_s = relocation_values(opacities[sampled], torch.exp(params["scales"].detach()[sampled]), copies)
        eps = torch.finfo(torch.float32).eps
        new_o = new_o.clamp(min=self.min_opacity, max=1.0 - eps)
        return sampled, torch.logit(new_o), torch.log(new_s)

    def _relocate(self, params: Params, optimizers: Optimizers, gen: torch.Generator) -> int:
        dead = torch.sigmoid(params["opacities"].detach()) <= self.min_opacity
        n_dead = int(dead.sum())
        alive = (~dead).nonzero().squeeze(1)
        if n_dead == 0 or alive.numel() == 0:
            return 0
        sampled, new_o, new_s = self._sample(params, alive, n_dead, gen)
        relocate(params, optimizers, dead.nonzero().squeeze(1), sampled, new_o, new_s)
        return n_dead

    def _grow(self, params: Params, optimizers: Optimizers, gen: torch.Generator) -> int:
        n = params["means"].shape[0]
        n_new = max(0, min(self.cap_max, int(1.05 * n)) - n)
        if n_new == 0 or n == 0:
            return 0
        sampled, new_o, new_s = self._sample(params, torch.arange(n, device=params["means"].device), n_new, gen)
        sample_add(params, optimizers, sampled, new_o, new_s)
        return n_new

    def _inject_noise(self, params: Params, scale: float, gen: torch.Generator) -> None:
        means = params["means"]
        noise = torch.randn(means.shape, generator=gen).to(means)
        arrays = [params[k].detach() for k in ("means", "quats", "scales", "opacities")]
        if all(t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() for t in arrays):
            _move_by_noise(*(t.numpy() for t in arrays), noise.numpy(), float(scale))
            return
        opacities = torch.sigmoid(params["opacities"].detach())
        # a steep sigmoid: noise only where opacity is below ~0.005
        gate = torch.sigmoid(NOISE_STEEPNESS * ((1.0 - opacities) - NOISE_CENTRE))
        noise = noise * gate[:, None] * scale
        # Where the gate is below 1e-10 the noise moves a mean by far less than float32 resolves:
        # only the other (few) Gaussians need their covariance.
        moved = torch.nonzero(gate > NOISE_GATE_FLOOR).squeeze(1)
        covars = covariances(params["quats"].detach()[moved], torch.exp(params["scales"].detach()[moved]))
        params["means"].index_add_(0, moved, torch.einsum("nij,nj->ni", covars, noise[moved]))
