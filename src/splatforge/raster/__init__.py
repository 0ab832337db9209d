"""The differentiable Gaussian rasterizer: `rasterization()` with gsplat 1.5.3's API."""

from .api import rasterization
from .pixels import rasterize_to_pixels
from .project import project_gaussians
from .tiles import isect_tiles

__all__ = ["rasterization", "rasterize_to_pixels", "project_gaussians", "isect_tiles"]
