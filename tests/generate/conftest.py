"""Fixtures shared by the generate tests: the "mini" LGM network with the weights, input and
Gaussians recorded from 3DTopia/LGM's own code (tools/lgm_reference/make_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def reference() -> dict:
    return torch.load(DATA / "lgm_mini.pt", weights_only=True)


@pytest.fixture(scope="session")
def mini_checkpoint(reference, tmp_path_factory) -> Path:
    """The reference weights as a .safetensors file, the released checkpoint's format."""
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("lgm") / "mini.safetensors"
    save_file(reference["state_dict"], str(path))
    return path


@pytest.fixture(scope="session")
def mini_generator(mini_checkpoint):
    from splatforge.generate import build_generator

    return build_generator("mini", checkpoint=mini_checkpoint)


def object_views(size: int = 48) -> np.ndarray:
    """Four [size, size, 3] views of a coloured box over white, one colour per side."""
    views = np.ones((4, size, size, 3), dtype=np.float32)
    for i in range(4):
        views[i, size // 4: 3 * size // 4, size // 3: 2 * size // 3] = (0.8, 0.2 * i, 0.1)
    return views
