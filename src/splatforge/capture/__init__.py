"""Posed captures, one type for every format: COLMAP, nerfstudio / instant-ngp transforms.json, Blender.

`load_capture(path)` detects the format and returns a `Capture` (see `types`). This package imports only
`core`, `io` and `errors`; `train`, `view` and `render` build on it.
"""

from .detect import detect_format, load_capture
from .init_points import random_points_in_view_volume, with_initial_points
from .photos import DEFAULT_LONG_SIDE
from .types import Capture, View, similarity_normalization

__all__ = ["Capture", "View", "load_capture", "detect_format", "similarity_normalization",
           "random_points_in_view_volume", "with_initial_points", "DEFAULT_LONG_SIDE"]
