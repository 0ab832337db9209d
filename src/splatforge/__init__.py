"""splatforge: Gaussian splatting on any machine.

`rasterization` and `rasterize_to_pixels` are imported on first use, so `import splatforge` and
the command line's light commands (`--help`, `info`, `convert --help`) do not load torch or Numba.
"""

from ._lazy import lazy_exports
from .errors import FormatError, SplatforgeError

__version__ = "0.1.0"
__all__ = ["rasterization", "rasterize_to_pixels", "SplatforgeError", "FormatError", "__version__"]
__getattr__, __dir__ = lazy_exports(__name__, {"rasterization": ".raster", "rasterize_to_pixels": ".raster"})
