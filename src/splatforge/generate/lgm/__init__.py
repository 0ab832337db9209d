"""LGM (3DTopia/LGM), the network: four posed views -> 3D Gaussians. Re-implemented with the
official checkpoint's module tree and parameter names."""

from .model import LGMConfig, LGMNetwork
from .presets import PRESETS, preset_config, random_network

__all__ = ["PRESETS", "LGMConfig", "LGMNetwork", "preset_config", "random_network"]
