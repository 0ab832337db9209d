"""Posed captures, one type for every format: COLMAP, nerfstudio / instant-ngp transforms.json, Blender.

`load_capture(path)` detects the format and returns a `Capture` (see `types`); `CaptureOptions` holds
its options that say how photos are read and split (the command line reads their defaults there). This
package imports only `core`, `io` and `errors`; `train`, `view` and `render` build on it.
"""

from splatforge._lazy import lazy_exports

# imported on first use: `splatforge.capture.options` alone (for `--help`) does not load numpy or Pillow
__getattr__, __dir__ = lazy_exports(__name__, {
    "detect_format": ".detect", "load_capture": ".detect",
    "random_points_in_view_volume": ".init_points", "with_initial_points": ".init_points",
    "CaptureOptions": ".options", "DEFAULT_LONG_SIDE": ".photos",
    "Capture": ".types", "View": ".types", "similarity_normalization": ".types",
})

__all__ = ["Capture", "View", "load_capture", "CaptureOptions", "detect_format", "similarity_normalization",
           "random_points_in_view_volume", "with_initial_points", "DEFAULT_LONG_SIDE"]
