"""ImageDream's multi-view diffusion pipeline (being written; the interface is final)."""

from __future__ import annotations

import numpy as np

DEFAULT_MODEL = "ashawkey/imagedream-ipmv-diffusers"


class MultiViewPipeline:
    """One picture -> four views (azimuth 0, 90, 180, 270) at LGM's cameras."""

    @classmethod
    def load(cls, model: str | None = None, *, device: str = "cpu") -> "MultiViewPipeline":
        raise NotImplementedError("the multi-view stage is being written")

    def __call__(self, image: np.ndarray, *, steps: int = 30, guidance: float = 5.0,
                 seed: int = 0) -> np.ndarray:  # [H, W, 3] -> [4, 256, 256, 3]
        raise NotImplementedError
