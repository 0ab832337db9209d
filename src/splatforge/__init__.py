"""splatforge: Gaussian splatting on any machine."""

from .errors import FormatError, SplatforgeError
from .raster import rasterization, rasterize_to_pixels

__version__ = "0.1.0"
__all__ = ["rasterization", "rasterize_to_pixels", "SplatforgeError", "FormatError", "__version__"]
