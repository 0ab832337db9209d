"""The OptModule interface: everything a trainer add-on needs, so the trainer holds no
module-specific code.

A module owns its parameters, optimizers and learning-rate schedules, adds loss terms, and acts at
three points of a step: before rasterization (change the Gaussians, the cameras or the background
of a batch), after rasterization (change the rendered colours), and at the end of a run (export
what it learned). Checkpoints carry its `state_dict()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor


@dataclass
class RenderBatch:
    """What is about to be rendered: modules may replace any field in `before_render`."""

    params: dict[str, Tensor]  # pre-activation Gaussians (means, scales, quats, opacities, sh0, shN)
    viewmats: Tensor  # [B, 4, 4] world-to-camera, normalized training frame
    Ks: Tensor  # [B, 3, 3]
    background: Tensor  # [B, 3]
    view_ids: Optional[Tensor]  # [B] indices into capture.train; None for views outside the training set
    names: list[str]  # the views' image names
    training: bool  # False during evaluation and rendering
    extras: dict[str, Any] = field(default_factory=dict)  # scratch space shared by the modules of one step


class OptModule:
    """Base class; every hook defaults to doing nothing."""

    name = "module"

    def setup(self, capture, config) -> None:
        """Build parameters for `capture` (its training views are capture.train) and the trainer's
        `config`; raise SplatforgeError when the module cannot work with this capture."""

    def before_render(self, batch: RenderBatch, step: int) -> RenderBatch:
        return batch

    def after_render(self, batch: RenderBatch, rgb: Tensor, alpha: Tensor, info: dict, step: int) -> Tensor:
        """rgb [B, H, W, 3] -> rgb; alpha [B, H, W, 1]."""
        return rgb

    def loss(self, batch: RenderBatch, step: int) -> Optional[Tensor]:
        """An extra loss term (already weighted), or None."""
        return None

    def optimizer_step(self, step: int) -> None:
        """Step the module's optimizers and schedules after backward, then zero its gradients."""

    def parameters(self) -> list[Tensor]:
        return []

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def export(self, out_dir: Path) -> dict[str, Path]:
        """Write what the module learned; returns {label: path}."""
        return {}

    def check_finite(self) -> Optional[str]:
        """A message naming what went non-finite, or None."""
        for p in self.parameters():
            if not bool(torch.isfinite(p.detach()).all()):
                return f"module {self.name!r}: parameters became non-finite"
        return None
