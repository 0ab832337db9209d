"""`blur`: explain motion- or defocus-blurred training photos (gsplat's blur_opt, after
Deblurring 3D Gaussian Splatting) so the scene itself stays sharp.

For a training image, an MLP of (the image's embedding, a Fourier encoding of each Gaussian's
position) predicts per-Gaussian log-scale increases (3, in [0, max_scale_delta]) and quaternion
offsets (4, in [-max_quat_delta, max_quat_delta]); the batch is rendered a second time with those
wider Gaussians. A second MLP of (the embedding, a Fourier encoding of pixel coordinates) predicts
a per-pixel mask m in (0, 1), and the training image is compared with
(1 - m) * sharp + m * blurred.

The mask regularizer (added to the loss) is bounded and keeps the blurred branch from taking over:
    mask_weight * (1 / (1 - mean(m) + eps) - 1 / (1 + eps)),
zero for an all-sharp mask, below mask_weight / eps, steepest as the mask fills the image.

Evaluation and renders (views without an embedding) use the sharp render only.

The second render needs the SH degree the trainer is at: the trainer passes it in the render
batch's extras (its schedule, fixed or fitted to a time budget, decides it; nothing here re-derives it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from ...core.gaussians import rasterization_args
from ...raster import rasterization
from . import register_module
from .base import OptModule, RenderBatch
from .common import (stop_if_not_finite, adam, check_state, fourier_encoding, load_tensor, mlp, module_options, non_negative,
                     num_train_views, positive)


@dataclass
class BlurConfig:
    embed_dim: int = 4  # per-image embedding size (gsplat's)
    mlp_width: int = 64
    mlp_depth: int = 3  # hidden layers of each MLP
    position_freqs: int = 3  # Fourier frequencies of the Gaussians' positions (gsplat's)
    pixel_freqs: int = 2  # Fourier frequencies of the pixel coordinates
    max_scale_delta: float = 0.7  # largest log-scale increase (0.7: about 2x wider)
    max_quat_delta: float = 0.1  # largest change of each quaternion component
    lr: float = 1e-3  # MLPs' and embeddings' Adam learning rate
    mask_weight: float = 0.01  # weight of the mask regularizer
    mask_eps: float = 0.05  # bounds the regularizer at mask_weight / mask_eps
    mask_init: float = 0.1  # the mask's value everywhere at the start

    def check(self) -> Optional[str]:
        if not 0.0 < self.mask_init < 1.0:
            return f"option 'mask_init' must be in (0, 1), got {self.mask_init}"
        return (positive(self, "embed_dim", "mlp_width", "mlp_depth", "max_scale_delta", "lr", "mask_eps")
                or non_negative(self, "position_freqs", "pixel_freqs", "max_quat_delta", "mask_weight"))


@register_module
class BlurModule(OptModule):
    name = "blur"

    def setup(self, capture, config) -> None:
        self.cfg = cfg = module_options(BlurConfig, self.name, config)
        self.train_config = config
        n = num_train_views(capture, self.name)
        gen = torch.Generator().manual_seed(config.seed + 202)
        self.embeds = torch.nn.Parameter(torch.randn(n, cfg.embed_dim, generator=gen) * 0.1)
        self.deltas_net = mlp(cfg.embed_dim + 3 * (1 + 2 * cfg.position_freqs), cfg.mlp_width, cfg.mlp_depth, 7, gen)
        self.mask_net = mlp(cfg.embed_dim + 2 * (1 + 2 * cfg.pixel_freqs), cfg.mlp_width, cfg.mlp_depth, 1, gen,
                            zero_last=True)
        with torch.no_grad():
            self.mask_net[-1].bias.fill_(math.log(cfg.mask_init / (1.0 - cfg.mask_init)))
        self.optimizer = adam(self.parameters(), cfg.lr)

    def blurred_gaussians(self, params: dict, embedding: Tensor) -> dict:
        """`params` with the scales and quaternions this image's blur widens them to."""
        means = params["means"].detach()
        h = torch.cat([embedding.expand(means.shape[0], -1), fourier_encoding(means, self.cfg.position_freqs)], -1)
        out = self.deltas_net(h)
        blurred = dict(params)
        # smooth bounds (not clamps): the blurred branch always differs from the sharp one, so the
        # mask has a gradient from the first step
        blurred["scales"] = params["scales"] + self.cfg.max_scale_delta * torch.sigmoid(out[:, :3])
        quats = torch.nn.functional.normalize(params["quats"], dim=-1)
        blurred["quats"] = quats + self.cfg.max_quat_delta * torch.tanh(out[:, 3:])
        return blurred

    def render(self, params: dict, viewmats: Tensor, ks: Tensor, width: int, height: int, sh_degree: int,
               background: Tensor) -> tuple[Tensor, Tensor, dict]:
        """Pre-activation `params` rendered as the trainer renders (its backend and rasterize mode)."""
        cfg = self.train_config
        return rasterization(**rasterization_args(params, sh_degree), viewmats=viewmats, Ks=ks, width=width,
                             height=height, backgrounds=background, packed=False,
                             rasterize_mode="antialiased" if cfg.antialiased else "classic", backend=cfg.backend)

    def mask(self, embedding: Tensor, height: int, width: int) -> Tensor:  # -> [H, W, 1]
        ys = (torch.arange(height) + 0.5) / height * 2 - 1
        xs = (torch.arange(width) + 0.5) / width * 2 - 1
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # [H, W, 2]
        h = torch.cat([embedding.expand(height, width, -1), fourier_encoding(grid, self.cfg.pixel_freqs)], -1)
        return torch.sigmoid(self.mask_net(h))

    def after_render(self, batch: RenderBatch, rgb: Tensor, alpha: Tensor, info: dict, step: int) -> Tensor:
        if not batch.training or batch.view_ids is None:
            return rgb
        stop_if_not_finite(self)

        height, width = rgb.shape[1:3]
        outputs, masks = [], []
        for b, view_id in enumerate(batch.view_ids.tolist()):
            embedding = self.embeds[view_id]
            sh_degree = batch.extras["sh_degree"]
            blurred, _, _ = self.render(self.blurred_gaussians(batch.params, embedding), batch.viewmats[b:b + 1],
                                        batch.Ks[b:b + 1], width, height, sh_degree, batch.background[b:b + 1])
            mask = self.mask(embedding, height, width)
            outputs.append((1 - mask) * rgb[b] + mask * blurred[0])
            masks.append(mask)
        batch.extras["blur_masks"] = torch.stack(masks)
        return torch.stack(outputs)

    def loss(self, batch: RenderBatch, step: int) -> Optional[Tensor]:
        if "blur_masks" not in batch.extras or self.cfg.mask_weight == 0:
            return None
        x = batch.extras["blur_masks"].mean()
        eps = self.cfg.mask_eps
        return self.cfg.mask_weight * (1.0 / (1.0 - x + eps) - 1.0 / (1.0 + eps))

    def optimizer_step(self, step: int) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def parameters(self) -> list[Tensor]:
        return [self.embeds, *self.deltas_net.parameters(), *self.mask_net.parameters()]

    def state_dict(self) -> dict:
        return {"embeds": self.embeds.detach().clone(),
                "deltas_net": {k: v.detach().clone() for k, v in self.deltas_net.state_dict().items()},
                "mask_net": {k: v.detach().clone() for k, v in self.mask_net.state_dict().items()},
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        check_state(state, self.name, ("embeds", "deltas_net", "mask_net", "optimizer"))
        load_tensor(self.embeds, state["embeds"], self.name, "embeds")
        for net_name in ("deltas_net", "mask_net"):
            for key, target in getattr(self, net_name).state_dict().items():
                load_tensor(target, state[net_name].get(key), self.name, f"{net_name}.{key}")
        self.optimizer.load_state_dict(state["optimizer"])
