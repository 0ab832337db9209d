"""Operations that change the set of Gaussians during training, keeping the optimizers consistent.

`params` is a `torch.nn.ParameterDict` of per-Gaussian tensors (means, scales, quats, opacities,
sh0, shN: the first dimension is N) and `optimizers` a dict with one optimizer per name, as in
gsplat. Every operation replaces each parameter by a new one with the rows it keeps or adds, and
edits each optimizer's state rows (Adam's exp_avg and exp_avg_sq) the same way: new rows start
from zero state, kept rows keep theirs.
"""

from __future__ import annotations

import math
from typing import Callable, Dict

import torch
from torch import Tensor

from ...raster.project import quat_to_rotmat

Params = torch.nn.ParameterDict
Optimizers = Dict[str, torch.optim.Optimizer]


@torch.no_grad()
def update_params(params: Params, optimizers: Optimizers, param_fn: Callable[[str, Tensor], Tensor],
                  state_fn: Callable[[str, Tensor], Tensor], strategy_state: Dict | None = None) -> None:
    """Replace every parameter p by param_fn(name, p) and every per-row optimizer state s by
    state_fn(key, s), re-pointing the optimizers at the new parameters. Per-row tensors in a
    strategy's state (running gradient sums, counts) get state_fn too."""
    n_old = params["means"].shape[0] if "means" in params else None
    if strategy_state is not None and n_old is not None:
        for key, value in list(strategy_state.items()):
            if torch.is_tensor(value) and value.dim() > 0 and value.shape[0] == n_old:
                strategy_state[key] = state_fn(key, value)
    for name in list(params.keys()):
        old = params[name]
        new = torch.nn.Parameter(param_fn(name, old), requires_grad=old.requires_grad)
        params[name] = new
        optimizer = optimizers.get(name)
        if optimizer is None:
            continue
        for group in optimizer.param_groups:
            for i, p in enumerate(group["params"]):
                if p is not old:
                    continue
                state = optimizer.state.pop(p, None)
                if state is not None:
                    for key, value in state.items():
                        if torch.is_tensor(value) and value.dim() > 0 and value.shape[0] == old.shape[0]:
                            state[key] = state_fn(key, value)
                    optimizer.state[new] = state
                group["params"][i] = new


def duplicate(params: Params, optimizers: Optimizers, mask: Tensor, state: Dict | None = None) -> None:
    """Append a copy of every Gaussian in `mask` (clone); the copies start with zero optimizer state."""
    sel = mask.nonzero().squeeze(1)
    update_params(params, optimizers, lambda _, p: torch.cat([p, p[sel]]),
                  lambda _, s: torch.cat([s, torch.zeros_like(s[sel])]), state)


def remove(params: Params, optimizers: Optimizers, mask: Tensor, state: Dict | None = None) -> None:
    """Delete every Gaussian in `mask`."""
    keep = (~mask).nonzero().squeeze(1)
    update_params(params, optimizers, lambda _, p: p[keep], lambda _, s: s[keep], state)


def split(params: Params, optimizers: Optimizers, mask: Tensor, state: Dict | None = None,
          generator: torch.Generator | None = None, scale_factor: float = 1.6) -> None:
    """Replace every Gaussian in `mask` by two, placed by sampling the original and shrunk by
    `scale_factor` (INRIA 3DGS's 1.6); the new pair starts with zero optimizer state."""
    sel = mask.nonzero().squeeze(1)
    rest = (~mask).nonzero().squeeze(1)
    scales = torch.exp(params["scales"][sel])
    rot = quat_to_rotmat(params["quats"][sel])
    noise = torch.randn((2, len(sel), 3), generator=generator, device=scales.device, dtype=scales.dtype)
    offsets = torch.einsum("nij,bnj->bni", rot, scales[None] * noise)  # [2, S, 3]

    def param_fn(name: str, p: Tensor) -> Tensor:
        if name == "means":
            new = (p[sel][None] + offsets).reshape(-1, 3)
        elif name == "scales":
            new = torch.log(scales / scale_factor).repeat(2, 1)
        else:
            new = p[sel].repeat((2,) + (1,) * (p.dim() - 1))
        return torch.cat([p[rest], new])

    def state_fn(_: str, s: Tensor) -> Tensor:
        return torch.cat([s[rest], torch.zeros((2 * len(sel),) + s.shape[1:], dtype=s.dtype, device=s.device)])

    update_params(params, optimizers, param_fn, state_fn, state)


@torch.no_grad()
def reset_opacities(params: Params, optimizers: Optimizers, value: float) -> None:
    """Clamp every opacity to at most `value` (in place) and clear the opacity optimizer's state."""
    opacities = params["opacities"]
    opacities.clamp_(max=math.log(value / (1.0 - value)))
    optimizer = optimizers.get("opacities")
    state = optimizer.state.get(opacities) if optimizer is not None else None
    for key, v in (state or {}).items():
        if torch.is_tensor(v) and v.dim() > 0:
            v.zero_()


def relocate(params: Params, optimizers: Optimizers, dead: Tensor, sampled: Tensor, new_opacity: Tensor,
             new_log_scales: Tensor) -> None:
    """MCMC relocation: dead Gaussians (indices) become copies of `sampled` ones (indices), and the
    sampled sources and their copies all take the given opacity logits and log scales (computed by
    the strategy so the rendered mass is preserved). Their optimizer state is reset."""
    touched = torch.cat([dead, sampled])

    def param_fn(name: str, p: Tensor) -> Tensor:
        p = p.clone()
        p[dead] = p[sampled]
        if name == "opacities":
            p[touched] = new_opacity.repeat(2)
        elif name == "scales":
            p[touched] = new_log_scales.repeat(2, 1)
        return p

    def state_fn(_: str, s: Tensor) -> Tensor:
        s = s.clone()
        s[touched] = 0
        return s

    update_params(params, optimizers, param_fn, state_fn)


def sample_add(params: Params, optimizers: Optimizers, sampled: Tensor, new_opacity: Tensor,
               new_log_scales: Tensor) -> None:
    """MCMC growth: append copies of the `sampled` Gaussians (indices); sources and copies take
    the given opacity logits and log scales. The copies start with zero optimizer state."""

    def param_fn(name: str, p: Tensor) -> Tensor:
        p = p.clone()
        if name == "opacities":
            p[sampled] = new_opacity
        elif name == "scales":
            p[sampled] = new_log_scales
        return torch.cat([p, p[sampled]])

    def state_fn(_: str, s: Tensor) -> Tensor:
        return torch.cat([s, torch.zeros((len(sampled),) + s.shape[1:], dtype=s.dtype, device=s.device)])

    update_params(params, optimizers, param_fn, state_fn)
