"""`fit_image`: approximate one image with N 2D Gaussians (the TinySplat / GaussianImage task)."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.images import load_image, save_image
from ..core.knn import nearest_neighbors
from ..core.metrics import psnr, ssim
from ..errors import SplatforgeError
from .model import BLENDS, FIELDS, Gaussians2D, render_gaussians_2d

LOSSES = ("l2", "l1", "l1+ssim")
# How new Gaussians (initial or densified) start, per blend: with "sum" overlapping Gaussians add
# up, so their colours start at half the image's and their opacity at 0.5; with "alpha" at 0.88.
START_COLOR_FACTOR = {"alpha": 1.0, "sum": 0.5}
START_OPACITY_LOGIT = {"alpha": 2.0, "sum": 0.0}


@dataclass
class FitConfig:
    """Settings of a fit; the CLI's options are generated from these fields."""

    num_gaussians: int = 1000  # how many Gaussians represent the image
    steps: int = 1000  # optimizer steps
    blend: Literal["alpha", "sum"] = "alpha"  # "alpha": front-to-back by depth; "sum": order-free (GaussianImage)
    loss: Literal["l2", "l1", "l1+ssim"] = "l2"  # "l2", "l1" or "l1+ssim" (0.8 L1 + 0.2 (1 - SSIM))
    lr_means: float = 2e-3  # Adam learning rates per parameter group (units of the image height)
    lr_scales: float = 1e-2
    lr_rotations: float = 1e-2
    lr_colors: float = 1e-2
    lr_opacities: float = 2e-2
    lr_final_fraction: float = 0.1  # every rate decays exponentially to this fraction at the end
    seed: int = 0
    detail_fraction: float = 0.7  # share of initial positions drawn where the image has detail
    init_scale: float = 0.7  # initial standard deviation, as a fraction of the distance to neighbours
    densify_every: int = 0  # if > 0: every this many steps, move the weakest Gaussians to the worst pixels
    densify_fraction: float = 0.05  # share of Gaussians moved at each densification
    densify_until: float = 0.7  # stop densifying after this fraction of the steps
    max_pixels: int = 64_000_000  # refuse larger images (raise it with --max-pixels)
    backend: Literal["cpu", "torch"] = "cpu"  # "cpu" (Numba kernels) or "torch" (the dense reference: slow, for checks)
    tile_size: int = 32  # pixels per tile edge; 2D fits have few, large Gaussians, so 32 beats 16

    def validate(self) -> None:
        if self.num_gaussians <= 0:
            raise SplatforgeError(f"num_gaussians must be > 0, got {self.num_gaussians}")
        if self.steps < 0:
            raise SplatforgeError(f"steps must be >= 0, got {self.steps}")
        if self.blend not in BLENDS:
            raise SplatforgeError(f"blend must be one of {BLENDS}, got {self.blend!r}")
        if self.backend not in ("cpu", "torch"):
            raise SplatforgeError(f"backend must be 'cpu' or 'torch', got {self.backend!r}")
        if self.tile_size < 1:
            raise SplatforgeError(f"tile_size must be >= 1, got {self.tile_size}")
        if self.loss not in LOSSES:
            raise SplatforgeError(f"loss must be one of {LOSSES}, got {self.loss!r}")


@dataclass
class FitResult:
    gaussians: Gaussians2D
    render: np.ndarray  # [H, W, 3] float32 in [0, 1]
    width: int
    height: int
    metrics: dict = field(default_factory=dict)  # psnr, ssim, num_gaussians, steps, seconds, steps_per_second
    config: Optional[FitConfig] = None


def _initial_gaussians(image: Tensor, cfg: FitConfig, gen: torch.Generator) -> Gaussians2D:
    """Positions drawn partly where the image has detail (gradient magnitude), partly uniformly;
    colours read from the image there; sizes from the distance to the nearest drawn neighbours."""
    height, width, _ = image.shape
    n = cfg.num_gaussians
    gray = image.mean(dim=-1)
    gx = F.pad(gray[:, 1:] - gray[:, :-1], (0, 1))
    gy = F.pad(gray[1:, :] - gray[:-1, :], (0, 0, 0, 1))
    detail = torch.sqrt(gx * gx + gy * gy).reshape(-1) + 1e-8
    n_detail = int(round(cfg.detail_fraction * n))
    picks = torch.cat([
        torch.multinomial(detail / detail.sum(), n_detail, replacement=True, generator=gen),
        torch.randint(0, height * width, (n - n_detail,), generator=gen),
    ])
    py, px = picks // width, picks % width
    jitter = torch.rand(n, 2, generator=gen)
    pixels = torch.stack([px, py], dim=-1).to(torch.float32) + jitter  # continuous pixel coordinates
    colors = image[py, px]
    if n > 1:
        dist, _ = nearest_neighbors(np.concatenate([pixels.numpy(), np.zeros((n, 1), np.float32)], 1), k=3)
        dist = np.where(np.isfinite(dist), dist, np.nan)
        spacing = torch.from_numpy(np.nan_to_num(np.nanmean(dist, axis=1), nan=1.0)).to(torch.float32)
    else:
        spacing = torch.full((1,), float(max(height, width)))
    sigma_px = torch.clamp(cfg.init_scale * spacing, min=0.5, max=0.25 * max(height, width))
    return Gaussians2D(
        means=pixels / height,
        log_scales=torch.log(sigma_px / height)[:, None].repeat(1, 2),
        rotations=torch.rand(n, generator=gen) * math.pi,
        colors=colors * START_COLOR_FACTOR[cfg.blend],
        opacity_logits=torch.full((n,), START_OPACITY_LOGIT[cfg.blend]),
        depths=torch.rand(n, generator=gen),
    )


def _as_rgb(image: np.ndarray | Tensor) -> Tensor:
    """[H, W, 3] float32 in [0, 1] from an array: grey [H, W] or [H, W, 1] is repeated, RGBA loses
    its alpha, uint8 is scaled; anything else, or non-finite values, is a clear error."""
    raw = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    if raw.dtype == np.uint8:
        raw = raw.astype(np.float32) / 255.0
    if raw.ndim == 2:
        raw = raw[..., None]
    if raw.ndim != 3 or raw.shape[-1] not in (1, 3, 4) or raw.shape[0] < 1 or raw.shape[1] < 1:
        raise SplatforgeError(f"image must be [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], got {raw.shape}")
    rgb = np.repeat(raw, 3, axis=-1) if raw.shape[-1] == 1 else raw[..., :3]
    rgb = np.ascontiguousarray(rgb, dtype=np.float32)
    if not np.isfinite(rgb).all():
        raise SplatforgeError("image holds NaN or inf values")
    return torch.from_numpy(rgb)


def _loss(render: Tensor, target: Tensor, kind: str) -> Tensor:
    if kind == "l2":
        return F.mse_loss(render, target)
    l1 = (render - target).abs().mean()
    if kind == "l1":
        return l1
    return 0.8 * l1 + 0.2 * (1.0 - ssim(render, target))


def _densify(params: dict[str, Tensor], optimizer: torch.optim.Adam, error: Tensor, cfg: FitConfig,
             image: Tensor, gen: torch.Generator) -> None:
    """Move the weakest Gaussians (lowest opacity x area) to the pixels with the largest error,
    small and with the image's colour there; their optimizer state starts afresh."""
    n = params["means"].shape[0]
    k = max(1, int(cfg.densify_fraction * n))
    height, width, _ = image.shape
    with torch.no_grad():
        strength = torch.sigmoid(params["opacity_logits"]) * torch.exp(params["log_scales"]).prod(dim=-1)
        weakest = torch.topk(strength, k, largest=False).indices
        err = error.reshape(-1)
        target_px = torch.multinomial(err / err.sum() if float(err.sum()) > 0 else torch.ones_like(err), k,
                                      replacement=False, generator=gen)
        py, px = target_px // width, target_px % width
        pixels = torch.stack([px, py], dim=-1).to(torch.float32) + 0.5
        sigma = torch.full((k,), 1.0 / height)
        new = {
            "means": pixels / height, "log_scales": torch.log(sigma)[:, None].repeat(1, 2),
            "rotations": torch.zeros(k), "colors": image[py, px] * START_COLOR_FACTOR[cfg.blend],
            "opacity_logits": torch.full((k,), START_OPACITY_LOGIT[cfg.blend]),
        }
        for group in optimizer.param_groups:
            p = group["params"][0]
            name = group["name"]
            p[weakest] = new[name]
            state = optimizer.state.get(p)
            if state:
                state["exp_avg"][weakest] = 0.0
                state["exp_avg_sq"][weakest] = 0.0


def fit_image(
    image: np.ndarray | Tensor | str | os.PathLike,
    num_gaussians: int | None = None,
    steps: int | None = None,
    config: FitConfig | None = None,
    progress: bool = True,
    callback: Callable[[int, float], None] | None = None,
    **overrides,
) -> FitResult:
    """Fit N 2D Gaussians to an image ([H, W, 3] floats in [0, 1], or a path).

    Keyword overrides set any `FitConfig` field (`blend=`, `loss=`, `lr_means=`, `seed=` ...).
    Reproducible for a given seed: the kernels are deterministic and all randomness is seeded.
    """
    cfg = config or FitConfig()
    changes = dict(overrides)
    if num_gaussians is not None:
        changes["num_gaussians"] = num_gaussians
    if steps is not None:
        changes["steps"] = steps
    unknown = set(changes) - set(FitConfig.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown fit settings: {sorted(unknown)}")
    cfg = FitConfig(**{**asdict(cfg), **changes})
    cfg.validate()
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image, max_pixels=cfg.max_pixels)
    target = _as_rgb(image)
    height, width, _ = target.shape
    if height * width > cfg.max_pixels:
        raise SplatforgeError(f"image has {height * width:,} pixels, over the limit of {cfg.max_pixels:,} (raise max_pixels)")

    gen = torch.Generator().manual_seed(cfg.seed)
    g = _initial_gaussians(target, cfg, gen)
    params = {name: getattr(g, name).clone().requires_grad_(name != "depths") for name in FIELDS}
    rates = {"means": cfg.lr_means, "log_scales": cfg.lr_scales, "rotations": cfg.lr_rotations,
             "colors": cfg.lr_colors, "opacity_logits": cfg.lr_opacities}
    optimizer = torch.optim.Adam([{"params": [params[k]], "lr": lr, "name": k} for k, lr in rates.items()],
                                 eps=1e-15, fused=True)
    decay = cfg.lr_final_fraction ** (1.0 / max(cfg.steps, 1))
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=decay)
    densify_stop = int(cfg.densify_until * cfg.steps)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, desc="fit", unit="step", dynamic_ncols=True)
    start = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        render, _ = render_gaussians_2d(Gaussians2D(**params), width, height, cfg.blend,
                                        tile_size=cfg.tile_size, backend=cfg.backend)
        loss = _loss(render, target, cfg.loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if cfg.densify_every > 0 and step % cfg.densify_every == 0 and step < densify_stop:
            _densify(params, optimizer, (render.detach() - target).abs().sum(-1), cfg, target, gen)
        if bar is not None and (step % 10 == 0 or step == cfg.steps):
            quality = psnr(render.clamp(0, 1), target)
            bar.set_postfix_str(f"PSNR {quality:.2f} dB")
            bar.update(step - bar.n)
        if callback is not None:
            callback(step, float(loss))
    seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()

    final = Gaussians2D(**{k: v.detach() for k, v in params.items()})
    with torch.no_grad():
        render, _ = render_gaussians_2d(final, width, height, cfg.blend, tile_size=cfg.tile_size,
                                        backend=cfg.backend)
        render = render.clamp(0, 1)
    metrics = {
        "psnr": psnr(render, target),
        "ssim": float(ssim(render, target)),
        "num_gaussians": len(final),
        "steps": cfg.steps,
        "seconds": seconds,
        "steps_per_second": cfg.steps / seconds if seconds > 0 else None,
        "width": width,
        "height": height,
        "blend": cfg.blend,
    }
    return FitResult(final, render.numpy(), width, height, metrics, cfg)


def save_fit(result: FitResult, out_dir: str | os.PathLike, target: np.ndarray | None = None) -> dict[str, Path]:
    """Write render.png, gaussians.npz, metrics.json and, given the target, compare.png
    (input | render | error heat map)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"render": save_image(out / "render.png", result.render)}
    arrays = {k: v.numpy() for k, v in result.gaussians.as_dict().items()}
    np.savez(out / "gaussians.npz", **arrays, width=result.width, height=result.height,
             blend=np.array(result.metrics.get("blend", "alpha")))
    paths["gaussians"] = out / "gaussians.npz"
    (out / "metrics.json").write_text(json.dumps(result.metrics, indent=2) + "\n")
    paths["metrics"] = out / "metrics.json"
    if target is not None:
        paths["compare"] = save_image(out / "compare.png", compare_strip(target, result.render))
    return paths


def compare_strip(target: np.ndarray, render: np.ndarray) -> np.ndarray:
    """Input | render | error heat map (absolute error, black -> red -> yellow -> white)."""
    err = np.abs(render - target).mean(axis=-1)
    scale = max(float(np.percentile(err, 99.5)), 1e-6)
    e = np.clip(err / scale, 0.0, 1.0)
    heat = np.stack([np.clip(3 * e, 0, 1), np.clip(3 * e - 1, 0, 1), np.clip(3 * e - 2, 0, 1)], axis=-1)
    return np.concatenate([target, render, heat.astype(np.float32)], axis=1)


def load_fit(path: str | os.PathLike) -> tuple[Gaussians2D, int, int, str]:
    """Read gaussians.npz (a file or the fit's folder): the Gaussians, width, height and blend."""
    path = Path(path)
    if path.is_dir():
        path = path / "gaussians.npz"
    if not path.is_file():
        raise SplatforgeError(f"{path}: no such fit (expected gaussians.npz written by `splatforge fit`)")
    try:
        with np.load(path, allow_pickle=False) as data:
            fields = {k: torch.from_numpy(np.asarray(data[k], dtype=np.float32)) for k in FIELDS}
            width, height, blend = int(data["width"]), int(data["height"]), str(data["blend"])
    except (KeyError, ValueError, OSError) as exc:
        raise SplatforgeError(f"{path}: not a fit written by splatforge ({exc})") from exc
    return Gaussians2D(**fields), width, height, blend


def render_fit(path: str | os.PathLike, scale: float = 1.0) -> np.ndarray:
    """Re-render a saved fit at `scale` times its size: [round(H * scale), round(W * scale), 3]."""
    gaussians, width, height, blend = load_fit(path)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    with torch.no_grad():
        rgb, _ = render_gaussians_2d(gaussians, w, h, blend)
    return rgb.clamp(0, 1).numpy()
