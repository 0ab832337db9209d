"""What the viewer shows: a scene loaded from a file or a training folder, cut to the browser's budget,
packed into viser's Gaussian-splat buffer.

- `load_view_scene(path)`: a splat file in any format `splatforge.io.scene` reads (INRIA PLY,
  compressed PLY, .splat, SPZ, SOG), or a folder, from which the newest ``*.ply`` (by
  modification time, searched recursively, so INRIA's ``point_cloud/iteration_*/point_cloud.ply``
  and splatforge's training output both work) is shown; a folder holding a SOG ``meta.json`` is
  read as that SOG scene instead.
- `subsample_for_browser(gaussians, max_gaussians)`: keeps the most opaque and largest Gaussians.
- `splat_buffer(gaussians)`: viser's 32-byte-per-Gaussian layout (centre f32x3, reserved, the
  covariance's upper triangle as f16x6, RGBA u8x4), built here so live updates can replace a
  handle's buffer in place instead of rebuilding the scene node.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from splatforge.core.gaussians import Gaussians
from splatforge.core.sh import C0
from splatforge.errors import SplatforgeError
from splatforge.io.scene import load_scene
from splatforge.raster.project import covariances as world_covariances

# viser sends the whole buffer in one websocket message and the browser sorts every splat on each
# camera move: a million Gaussians is 32 MB and sorts at interactive rates on a laptop GPU.
DEFAULT_MAX_GAUSSIANS = 1_000_000


@dataclass
class ViewScene:
    gaussians: Gaussians  # what is shown, after any subsampling
    source: Path  # the file actually read (the newest .ply when a folder was given)
    total: int  # Gaussians in the file, before subsampling
    message: str | None  # what subsampling did, None when everything is shown


def newest_ply(folder: Path) -> Path:
    """The most recently modified ``*.ply`` under `folder` (recursively); ties go to the last path
    in sorted order, so ``iteration_30000`` wins over ``iteration_7000`` written in the same second."""
    candidates = sorted(p for p in folder.rglob("*.ply") if p.is_file())
    if not candidates:
        raise SplatforgeError(f"{folder} is a folder with no .ply file in it (searched recursively); "
                              "pass a splat file or a training output folder")
    return max(reversed(candidates), key=lambda p: p.stat().st_mtime_ns)


def read_scene_file(path: Path) -> Gaussians:
    """A splat file (any format `splatforge.io.scene` reads) as CPU float32 Gaussians."""
    return load_scene(path)


def load_view_scene(path: str | os.PathLike, max_gaussians: int | None = DEFAULT_MAX_GAUSSIANS) -> ViewScene:
    """Read a scene for viewing (see the module doc), subsampled to `max_gaussians` (None: all).

    Raises SplatforgeError for a missing path, a folder without .ply files, a corrupt file or
    non-finite parameters."""
    path = Path(path)
    if not path.exists():
        raise SplatforgeError(f"scene not found: {path}")
    sog_folder = path.is_dir() and (path / "meta.json").is_file()
    source = newest_ply(path) if path.is_dir() and not sog_folder else path
    gaussians = read_scene_file(source).detach().to("cpu", torch.float32)
    if len(gaussians) == 0:
        raise SplatforgeError(f"{source} holds no Gaussians; there is nothing to view")
    gaussians.check_finite()
    shown, message = subsample_for_browser(gaussians, max_gaussians)
    return ViewScene(shown, source, len(gaussians), message)


def importance(gaussians: Gaussians) -> torch.Tensor:  # [N]
    """log(opacity x area of the two largest axes): what a subsample keeps first. Area, not volume,
    so flat splats (surfaces, which dominate trained scenes) rank by what they cover on screen."""
    log_scales = gaussians.scales.detach().float()
    largest_two = log_scales.sort(dim=1).values[:, 1:].sum(1)
    return torch.nn.functional.logsigmoid(gaussians.opacities.detach().float()) + largest_two


def subsample_for_browser(gaussians: Gaussians, max_gaussians: int | None) -> tuple[Gaussians, str | None]:
    """The `max_gaussians` Gaussians with the highest `importance` (in their original order), and a
    message saying so; unchanged with None when the scene fits."""
    if max_gaussians is None or len(gaussians) <= max_gaussians:
        return gaussians, None
    if max_gaussians < 1:
        raise SplatforgeError(f"max_gaussians must be >= 1, got {max_gaussians}")
    keep = torch.topk(importance(gaussians), max_gaussians, sorted=False).indices.sort().values
    message = (f"showing {max_gaussians:,} of {len(gaussians):,} Gaussians (the most opaque and largest) "
               f"to stay within the browser budget; raise --max-gaussians to show more")
    return gaussians[keep], message


def covariances(gaussians: Gaussians) -> np.ndarray:  # [N, 3, 3] float32
    """World covariances R diag(s^2) R^T from the pre-activation scales and quaternions."""
    g = gaussians.detach().to("cpu", torch.float32)
    return world_covariances(g.quats, g.activated_scales()).numpy()


def splat_buffer(gaussians: Gaussians) -> np.ndarray:  # [N, 8] uint32
    """viser's Gaussian-splat buffer (see the module doc); colours are the view-independent
    degree-0 term, since viser's renderer does not evaluate higher SH degrees."""
    n = len(gaussians)
    cov = covariances(gaussians).reshape(n, 9)[:, [0, 1, 2, 4, 5, 8]]
    rgb = (gaussians.sh0[:, 0].detach().float() * C0 + 0.5).clamp(0, 1)
    alpha = gaussians.activated_opacities().detach().float()[:, None]
    rgba = (torch.cat([rgb, alpha], 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()
    out = np.empty((n, 32), dtype=np.uint8)
    out[:, 0:12] = np.ascontiguousarray(gaussians.means.detach().float().cpu().numpy()).view(np.uint8)
    out[:, 12:16] = 0
    out[:, 16:28] = np.ascontiguousarray(cov.astype(np.float16)).view(np.uint8)
    out[:, 28:32] = rgba
    return out.view(np.uint32)


def scene_bounds(gaussians: Gaussians) -> tuple[np.ndarray, float]:
    """A robust centre and radius of the scene (the 5-95 percentile box of the centres), for
    placing the first camera; outlying floaters in trained scenes would push a min/max box away."""
    means = gaussians.means.detach().float().cpu().numpy()
    if len(means) > 200_000:
        means = means[np.linspace(0, len(means) - 1, 200_000).astype(np.int64)]
    lo, hi = np.percentile(means, [5, 95], axis=0)
    centre = (lo + hi) / 2
    radius = float(np.linalg.norm(hi - lo) / 2)
    return centre, max(radius, 1e-3)
