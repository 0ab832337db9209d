"""`train_scene`: optimize 3D Gaussians against a capture's training views on the CPU rasterizer.

gsplat's `simple_trainer.py` recipe: Adam per parameter group with gsplat's learning rates (the
means' scaled by the scene and decayed exponentially to 1% over the run), loss 0.8 L1 + 0.2 D-SSIM,
SH degree raised every `sh_degree_interval` steps, a densification strategy's two hooks, and
evaluation (PSNR, SSIM) on the held-out views. Training runs in the capture's normalized frame;
`export_ply` writes the scene in the capture's own frame.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..core.gaussians import Gaussians
from ..core.metrics import psnr, ssim
from ..errors import SplatforgeError
from ..io.ply import write_ply
from ..raster import rasterization
from .data import Capture, View
from .strategies import DefaultStrategy, MCMCStrategy


@dataclass
class TrainConfig:
    """Training settings with gsplat's defaults (scaled down where a CPU needs it)."""

    max_steps: int = 30_000  # optimizer steps
    batch_size: int = 1  # training views per step
    sh_degree: int = 3  # final SH degree
    sh_degree_interval: int = 1000  # raise the SH degree by one every this many steps
    ssim_lambda: float = 0.2  # loss = (1 - l) L1 + l (1 - SSIM)
    init_opacity: float = 0.1  # opacity of the initial Gaussians
    init_scale: float = 1.0  # initial scale, times the mean distance to the 3 nearest points
    random_init: bool = False  # start from random points in the cameras' bounding box, not SfM points
    init_num_points: int = 100_000  # how many, with random_init
    means_lr: float = 1.6e-4  # times the scene scale, decayed to 1% over max_steps
    scales_lr: float = 5e-3
    quats_lr: float = 1e-3
    opacities_lr: float = 5e-2
    sh0_lr: float = 2.5e-3
    shN_lr: float = 2.5e-3 / 20
    background: tuple = (0.0, 0.0, 0.0)  # colour behind the Gaussians
    strategy: str = "default"  # "default" or "mcmc"
    absgrad: bool = False
    antialiased: bool = False
    seed: int = 42


@dataclass
class TrainResult:
    gaussians: Gaussians  # normalized frame, pre-activation
    metrics: dict = field(default_factory=dict)  # test psnr/ssim, count, seconds, steps
    history: list = field(default_factory=list)  # per logged step: step, loss, count, seconds


def _render(params, view_viewmats, view_ks, width, height, sh_degree, cfg: TrainConfig, bg: torch.Tensor):
    colors = torch.cat([params["sh0"], params["shN"]], dim=1)
    return rasterization(
        means=params["means"], quats=params["quats"], scales=torch.exp(params["scales"]),
        opacities=torch.sigmoid(params["opacities"]), colors=colors, viewmats=view_viewmats, Ks=view_ks,
        width=width, height=height, sh_degree=sh_degree, backgrounds=bg.expand(view_viewmats.shape[0], 3),
        packed=False, absgrad=cfg.absgrad, rasterize_mode="antialiased" if cfg.antialiased else "classic",
    )


def _initial_gaussians(capture: Capture, cfg: TrainConfig, gen: torch.Generator) -> Gaussians:
    if cfg.random_init or len(capture.points) == 0:
        if not cfg.random_init:
            raise SplatforgeError("the capture has no SfM points; use random initialisation (random_init=True)")
        points = (torch.rand(cfg.init_num_points, 3, generator=gen) * 2 - 1) * 1.5
        colors = torch.rand(cfg.init_num_points, 3, generator=gen)
    else:
        points = torch.from_numpy(capture.points).float()
        colors = torch.from_numpy(capture.colors).float() / 255.0
    g = Gaussians.from_points(points, colors, sh_degree=cfg.sh_degree, opacity=cfg.init_opacity)
    g.scales = g.scales + math.log(cfg.init_scale)
    g.quats = torch.randn(len(g), 4, generator=gen)
    return g


def _stack(views: list[View]):
    return (torch.from_numpy(np.stack([v.viewmat for v in views])).float(),
            torch.from_numpy(np.stack([v.K for v in views])).float(),
            torch.from_numpy(np.stack([v.image for v in views])))


@torch.no_grad()
def evaluate(params, views: list[View], cfg: TrainConfig, sh_degree: int) -> dict:
    """Mean PSNR and SSIM over `views` (all of one size)."""
    if not views:
        return {}
    bg = torch.tensor(cfg.background, dtype=torch.float32)
    scores_psnr, scores_ssim = [], []
    for view in views:
        vm, k, target = _stack([view])
        rgb, _, _ = _render(params, vm, k, target.shape[2], target.shape[1], sh_degree, cfg, bg)
        rgb = rgb.clamp(0, 1)
        scores_psnr.append(psnr(rgb, target))
        scores_ssim.append(float(ssim(rgb, target)))
    return {"psnr": float(np.mean(scores_psnr)), "ssim": float(np.mean(scores_ssim))}


def train_scene(capture: Capture, config: Optional[TrainConfig] = None,
                callback: Optional[Callable[[int, dict], None]] = None, **overrides: Any) -> TrainResult:
    """Train Gaussians on `capture.train`; evaluate on `capture.test` at the end."""
    cfg = config or TrainConfig()
    if overrides:
        cfg = TrainConfig(**{**cfg.__dict__, **overrides})
    if cfg.strategy not in ("default", "mcmc"):
        raise SplatforgeError(f"strategy must be 'default' or 'mcmc', got {cfg.strategy!r}")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    init = _initial_gaussians(capture, cfg, gen)
    params = torch.nn.ParameterDict({k: torch.nn.Parameter(v) for k, v in init.as_dict().items()})
    scene_scale = 1.0  # the capture is normalized to unit camera radius
    rates = {"means": cfg.means_lr * scene_scale, "scales": cfg.scales_lr, "quats": cfg.quats_lr,
             "opacities": cfg.opacities_lr, "sh0": cfg.sh0_lr, "shN": cfg.shN_lr}
    batch = max(1, cfg.batch_size)
    optimizers = {k: torch.optim.Adam([params[k]], lr=lr * math.sqrt(batch), eps=1e-15 / math.sqrt(batch))
                  for k, lr in rates.items()}
    decay = 0.01 ** (1.0 / max(cfg.max_steps, 1))
    strategy = DefaultStrategy(absgrad=cfg.absgrad) if cfg.strategy == "default" else MCMCStrategy()
    state = (strategy.initialize_state(scene_scale=scene_scale) if cfg.strategy == "default"
             else strategy.initialize_state(seed=cfg.seed))
    viewmats, ks, images = _stack(capture.train)
    height, width = images.shape[1:3]
    bg = torch.tensor(cfg.background, dtype=torch.float32)
    history = []
    start = time.perf_counter()
    for step in range(cfg.max_steps):
        idx = torch.randint(0, len(capture.train), (batch,), generator=gen)
        sh_degree = min(step // cfg.sh_degree_interval, cfg.sh_degree)
        rgb, _, info = _render(params, viewmats[idx], ks[idx], width, height, sh_degree, cfg, bg)
        target = images[idx]
        l1 = F.l1_loss(rgb, target)
        loss = (1 - cfg.ssim_lambda) * l1 + cfg.ssim_lambda * (1.0 - ssim(rgb, target))
        if not torch.isfinite(loss):
            raise SplatforgeError(f"the loss became {float(loss)} at step {step}; stopping")
        strategy.step_pre_backward(params, optimizers, state, step, info)
        loss.backward()
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        for group in optimizers["means"].param_groups:
            group["lr"] *= decay
        if cfg.strategy == "default":
            strategy.step_post_backward(params, optimizers, state, step, info, packed=False)
        else:
            strategy.step_post_backward(params, optimizers, state, step, info,
                                        lr=optimizers["means"].param_groups[0]["lr"])
        record = {"step": step, "loss": float(loss.detach()), "count": params["means"].shape[0],
                  "seconds": time.perf_counter() - start}
        history.append(record)
        if callback is not None:
            callback(step, record)
    seconds = time.perf_counter() - start
    final_degree = min(max(cfg.max_steps - 1, 0) // cfg.sh_degree_interval, cfg.sh_degree)
    metrics = {"test": evaluate(params, capture.test, cfg, final_degree), "count": params["means"].shape[0],
               "seconds": seconds, "steps": cfg.max_steps,
               "steps_per_second": cfg.max_steps / seconds if seconds > 0 else None}
    gaussians = Gaussians(**{k: v.detach() for k, v in params.items()})
    return TrainResult(gaussians, metrics, history)


def to_capture_frame(gaussians: Gaussians, normalization: np.ndarray) -> Gaussians:
    """Map Gaussians from the normalized training frame (x_n = s x_w + t) back to the capture's:
    means scale and shift back, log scales drop log s; rotations and SH are unchanged."""
    scale = float(np.cbrt(np.linalg.det(normalization[:3, :3])))
    shift = torch.from_numpy(normalization[:3, 3]).to(gaussians.means)
    out = gaussians.clone()
    out.means = (gaussians.means - shift) / scale
    out.scales = gaussians.scales - math.log(scale)
    return out


def export_ply(result: TrainResult, capture: Capture, path: str | Path) -> Path:
    """Write the trained scene as an INRIA PLY in the capture's own frame."""
    write_ply(path, to_capture_frame(result.gaussians, capture.normalization))
    return Path(path)
