"""`background`: learn the colour behind the Gaussians instead of assuming the trainer's fixed one.

Three parameters, the sigmoid of which is the background colour, start at the trainer's
`background` (clamped into [0.01, 0.99] so the sigmoid can reach it) and replace the batch's
background in training, evaluation and renders alike. `export` writes the learned colour.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from . import register_module
from .base import RenderBatch
from .common import OneTensorModule, stop_if_not_finite, adam, module_options, positive


@dataclass
class BackgroundConfig:
    lr: float = 5e-2  # Adam learning rate of the colour's logits

    def check(self) -> Optional[str]:
        return positive(self, "lr")


@register_module
class BackgroundModule(OneTensorModule):
    tensor_name = "logits"
    name = "background"

    def setup(self, capture, config) -> None:
        self.cfg = module_options(BackgroundConfig, self.name, config)
        start = torch.tensor(config.background, dtype=torch.float32).clamp(0.01, 0.99)
        self.logits = torch.nn.Parameter(torch.log(start / (1 - start)))
        self.optimizer = adam([self.logits], self.cfg.lr * math.sqrt(max(1, config.batch_size)))

    def color(self) -> Tensor:  # [3]
        return torch.sigmoid(self.logits)

    def before_render(self, batch: RenderBatch, step: int) -> RenderBatch:
        stop_if_not_finite(self)
        batch.background = self.color().expand(batch.viewmats.shape[0], 3)
        return batch

    def export(self, out_dir: Path) -> dict[str, Path]:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "background.json"
        path.write_text(json.dumps({"background_rgb": [float(c) for c in self.color().detach()]}, indent=2))
        return {"background": path}
