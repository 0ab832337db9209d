"""Thin delegation to gsplat's CUDA kernels for CUDA tensors.

Untested on CPU-only machines (gsplat's pixel kernels need CUDA): it only forwards the arguments.
"""

from __future__ import annotations

import importlib.util

from ..errors import SplatforgeError


def available() -> bool:
    return importlib.util.find_spec("gsplat") is not None


def rasterization(**kwargs):
    if not available():
        raise SplatforgeError("backend='gsplat' needs gsplat: pip install gsplat (and a CUDA build of torch)")
    import gsplat

    if kwargs.get("rolling_shutter") is None:
        kwargs.pop("rolling_shutter", None)
    return gsplat.rasterization(**kwargs)
