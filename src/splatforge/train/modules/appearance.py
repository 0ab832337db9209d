"""`appearance`: per-image appearance embeddings (gsplat's AppearanceOptModule, for captures whose
photos differ in exposure, white balance or lighting, like Photo Tourism).

Each training image owns an embedding. A small MLP maps (the image's embedding, per-Gaussian
features, the SH basis of the direction from the camera to the Gaussian) to an RGB correction that
is added to the Gaussian's colour (through its SH DC term) for that image only. The MLP's output
layer starts at zero, so training starts from the plain render.

Per-Gaussian features: gsplat learns a feature vector per Gaussian, which its strategies grow and
prune with the Gaussians. The trainer's strategies only know the six Gaussian tensors, so here the
features are computed from them instead: the Gaussian's base colour (0.5 + C0 sh0) and a Fourier
encoding of its position, both detached (the correction learns a function of them; it does not
move the Gaussians).

Views without an embedding (test views, renders): `eval_embedding="mean"` (the default) uses the
mean of the training embeddings, so held-out views get the captures' average appearance;
`"zero"` uses a zero embedding (gsplat's choice); `"none"` renders without correction.

The trainer renders one SH tensor for a whole batch, so the module needs batch_size 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from ...core.sh import C0, sh_basis
from ...errors import SplatforgeError
from . import register_module
from .base import OptModule, RenderBatch
from .common import (stop_if_not_finite, adam, check_state, fourier_encoding, load_tensor, mlp, module_options, non_negative,
                     num_train_views, positive)

EVAL_EMBEDDINGS = ("mean", "zero", "none")


@dataclass
class AppearanceConfig:
    embed_dim: int = 16  # per-image embedding size
    mlp_width: int = 64
    mlp_depth: int = 2  # hidden layers
    dir_sh_degree: int = 2  # SH degree of the view-direction encoding (0-3)
    position_freqs: int = 2  # Fourier frequencies of the position features
    lr: float = 1e-3  # MLP learning rate (gsplat's app_opt_lr)
    embed_lr: float = 1e-2  # embedding learning rate (gsplat: 10x the MLP's)
    reg: float = 1e-6  # weight decay (gsplat's app_opt_reg)
    eval_embedding: str = "mean"  # for views without an embedding: mean, zero or none

    def check(self) -> Optional[str]:
        if self.eval_embedding not in EVAL_EMBEDDINGS:
            return f"option 'eval_embedding' must be one of {', '.join(EVAL_EMBEDDINGS)}, got {self.eval_embedding!r}"
        if not 0 <= self.dir_sh_degree <= 3:
            return f"option 'dir_sh_degree' must be in 0..3, got {self.dir_sh_degree}"
        return (positive(self, "embed_dim", "mlp_width", "mlp_depth", "lr", "embed_lr")
                or non_negative(self, "reg", "position_freqs"))


@register_module
class AppearanceModule(OptModule):
    name = "appearance"

    def setup(self, capture, config) -> None:
        self.cfg = cfg = module_options(AppearanceConfig, self.name, config)
        if config.batch_size != 1:
            raise SplatforgeError("module 'appearance' needs batch_size 1: the trainer renders one set of SH "
                                  f"colours per batch, got batch_size {config.batch_size}")
        n = num_train_views(capture, self.name)
        gen = torch.Generator().manual_seed(config.seed + 101)
        self.embeds = torch.nn.Parameter(torch.randn(n, cfg.embed_dim, generator=gen) * 0.1)
        feature_dim = 3 + 3 * (1 + 2 * cfg.position_freqs)
        self.net = mlp(cfg.embed_dim + feature_dim + (cfg.dir_sh_degree + 1) ** 2, cfg.mlp_width, cfg.mlp_depth, 3,
                       gen, zero_last=True)
        self.optimizer = adam(list(self.net.parameters()), cfg.lr, cfg.reg)
        self.embed_optimizer = adam([self.embeds], cfg.embed_lr, cfg.reg)

    def embedding_for(self, batch: RenderBatch) -> Optional[Tensor]:  # [B, E] or None for no correction
        if batch.view_ids is not None:
            return self.embeds[batch.view_ids]
        count = batch.viewmats.shape[0]
        if self.cfg.eval_embedding == "mean":
            return self.embeds.mean(dim=0, keepdim=True).expand(count, -1)
        if self.cfg.eval_embedding == "zero":
            return torch.zeros(count, self.cfg.embed_dim)
        return None

    def color_correction(self, params: dict, viewmat: Tensor, embedding: Tensor) -> Tensor:
        """RGB correction [N, 3] for the Gaussians `params` seen from `viewmat` [4, 4]."""
        means = params["means"].detach()
        base = (0.5 + C0 * params["sh0"].detach()[:, 0, :]).clamp(0.0, 1.0)
        features = torch.cat([base, fourier_encoding(means, self.cfg.position_freqs)], dim=-1)
        center = -viewmat[:3, :3].T @ viewmat[:3, 3]
        dirs = torch.nn.functional.normalize(means - center, dim=-1)
        h = torch.cat([embedding.expand(means.shape[0], -1), features, sh_basis(self.cfg.dir_sh_degree, dirs)], dim=-1)
        return self.net(h)

    def before_render(self, batch: RenderBatch, step: int) -> RenderBatch:
        stop_if_not_finite(self)
        embedding = self.embedding_for(batch)
        if embedding is None:
            return batch
        if batch.viewmats.shape[0] != 1:
            raise SplatforgeError("module 'appearance' renders one view at a time; got a batch of "
                                  f"{batch.viewmats.shape[0]}")
        correction = self.color_correction(batch.params, batch.viewmats[0].detach(), embedding[0])
        params = dict(batch.params)
        params["sh0"] = params["sh0"] + (correction / C0)[:, None, :]
        batch.params = params
        return batch

    def optimizer_step(self, step: int) -> None:
        for opt in (self.optimizer, self.embed_optimizer):
            opt.step()
            opt.zero_grad(set_to_none=True)

    def parameters(self) -> list[Tensor]:
        return [self.embeds, *self.net.parameters()]

    def state_dict(self) -> dict:
        return {"embeds": self.embeds.detach().clone(),
                "net": {k: v.detach().clone() for k, v in self.net.state_dict().items()},
                "optimizer": self.optimizer.state_dict(), "embed_optimizer": self.embed_optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        check_state(state, self.name, ("embeds", "net", "optimizer", "embed_optimizer"))
        load_tensor(self.embeds, state["embeds"], self.name, "embeds")
        for key, target in self.net.state_dict().items():
            load_tensor(target, state["net"].get(key), self.name, f"net.{key}")
        self.optimizer.load_state_dict(state["optimizer"])
        self.embed_optimizer.load_state_dict(state["embed_optimizer"])
