"""SHARP's PLY layout: INRIA vertices at SH degree 0 plus the scene's camera and metadata.

Element and property order, types and values follow ml-sharp's `save_ply`: colours converted
linear -> sRGB (public viewers blend without gamma), log scales, logit opacities, and the
elements extrinsic (16 f4, identity), intrinsic (9 f4), image_size (2 u4: width, height),
frame (2 i4: 1, N), disparity (2 f4: 10% and 90% quantiles of 1/z), color_space (u1, 0 = sRGB)
and version (3 u1: 1, 5, 0).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from splatforge.core.sh import C0
from splatforge.io.ply_format import write_ply_elements

from .sharp.composer import linear_to_srgb

if TYPE_CHECKING:
    from .api import Prediction

VERTEX_FIELDS = (["x", "y", "z"] + [f"f_dc_{i}" for i in range(3)] + ["opacity"]
                 + [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)])
PLY_VERSION = (1, 5, 0)


def _column(name: str, values, dtype: str) -> np.ndarray:
    values = np.asarray(values)
    out = np.empty(len(values), dtype=[(name, dtype)])
    out[name] = values
    return out


@torch.no_grad()
def save_ply(prediction: Prediction, path: str | os.PathLike) -> Path:
    """Write a prediction as ml-sharp writes it (see the module docstring); returns the path."""
    path = Path(path)
    n = prediction.num_gaussians
    colors_srgb = linear_to_srgb(prediction.colors) if prediction.color_space == "linearRGB" \
        else prediction.colors
    opacities = prediction.opacities
    columns = [
        prediction.means,
        (colors_srgb - 0.5) / C0,
        torch.log(opacities / (1.0 - opacities))[:, None],
        torch.log(prediction.scales),
        prediction.quats,
    ]
    data = torch.cat([c.to(torch.float32).cpu() for c in columns], dim=1).numpy()
    vertex = np.empty(n, dtype=[(name, "<f4") for name in VERTEX_FIELDS])
    vertex_view = vertex.view("<f4").reshape(n, len(VERTEX_FIELDS))
    vertex_view[:] = data

    width, height = prediction.image_size
    f = prediction.focal_length_px
    disparity = 1.0 / prediction.means[:, 2].to(torch.float32)
    quantiles = torch.quantile(disparity, torch.tensor([0.1, 0.9])) if n else torch.zeros(2)
    elements = {
        "vertex": vertex,
        "extrinsic": _column("extrinsic", np.eye(4).ravel(), "<f4"),
        "intrinsic": _column("intrinsic", [f, 0, width * 0.5, 0, f, height * 0.5, 0, 0, 1],
                             "<f4"),
        "image_size": _column("image_size", [width, height], "<u4"),
        "frame": _column("frame", [1, n], "<i4"),
        "disparity": _column("disparity", quantiles.numpy(), "<f4"),
        "color_space": _column("color_space", [0], "u1"),
        "version": _column("version", PLY_VERSION, "u1"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_ply_elements(path, elements)
    return path
