"""Named LGM configurations.

"big" is the released model (`model_fp16_fixrot.safetensors`: 256x256 input views, 4 x 128 x 128
Gaussians); "small" and "tiny" are LGM's other shipped configs (4 x 64 x 64 Gaussians). "mini"
is not LGM's: a 389k-parameter network of the same architecture for tests, with seeded
random weights (tools/lgm_reference/make_fixtures.py builds it in LGM's code for the parity test).
"""

from __future__ import annotations

import torch

from .model import LGMConfig, LGMNetwork

PRESETS = ("big", "small", "tiny", "mini")
RELEASED_PRESET = "big"

_CONFIGS = {
    "small": LGMConfig(),
    "big": LGMConfig(up_channels=(1024, 1024, 512, 256, 128), up_attention=(True, True, True, False, False)),
    "tiny": LGMConfig(down_channels=(32, 64, 128, 256, 512), down_attention=(False, False, False, False, True),
                      up_channels=(512, 256, 128), up_attention=(True, False, False)),
    # GroupNorm(32) makes 32 the narrowest width; 32 input pixels keep the parity fixture small.
    "mini": LGMConfig(input_size=32, down_channels=(32, 32, 32), down_attention=(False, False, True),
                      up_channels=(32, 32), up_attention=(True, False)),
}


def preset_config(name: str) -> LGMConfig:
    """The `LGMConfig` of a preset name (ValueError for an unknown one)."""
    if name not in _CONFIGS:
        raise ValueError(f"unknown LGM preset {name!r}; choose one of {', '.join(PRESETS)}")
    return _CONFIGS[name]


def random_network(name: str, seed: int) -> LGMNetwork:
    """A network of preset `name` with PyTorch's default initialization drawn from `seed`
    (LGM has no zero-initialized layer, so every part of the network is exercised)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LGMNetwork(preset_config(name))
