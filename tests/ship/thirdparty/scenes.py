"""Scenes and comparisons shared by the third-party reader tests.

Everything here is ours (scene construction, our rasterizer as the reference picture, matching
Gaussians across a reordering writer); the third-party side lives in conftest.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from splatforge.core.gaussians import Gaussians
from splatforge.core.sh import C0
from splatforge.raster.api import rasterization

K_OF_DEGREE = {0: 0, 1: 3, 2: 8, 3: 15}


def _sh0_of_rgb(rgb) -> np.ndarray:
    return ((np.asarray(rgb, np.float64) - 0.5) / C0).astype(np.float32)


@dataclass(frozen=True)
class View:
    """A pinhole camera at (0, 0, -distance) looking down +z (OpenCV axes: x right, y down),
    principal point at the image centre, which is where gsplat.js puts it."""

    width: int = 160
    height: int = 120
    focal: float = 120.0
    distance: float = 4.0

    def project(self, xyz) -> tuple[int, int]:
        """Pixel (column, row) holding the image of world point xyz."""
        x, y, z = xyz
        depth = z + self.distance
        return (int(self.width / 2 + self.focal * x / depth), int(self.height / 2 + self.focal * y / depth))

    def for_gsplat_js(self) -> dict:
        return {"width": self.width, "height": self.height, "fx": self.focal, "fy": self.focal,
                "position": [0.0, 0.0, -self.distance], "rotation": [1.0, 0.0, 0.0, 0.0]}

    def render_ours(self, g: Gaussians) -> np.ndarray:
        """[H, W, 4] float RGBA over a transparent background (premultiplied, as a WebGL canvas
        reads back), by splatforge's reference rasterizer."""
        viewmat = torch.eye(4)
        viewmat[2, 3] = self.distance
        k = torch.tensor([[self.focal, 0.0, self.width / 2], [0.0, self.focal, self.height / 2],
                          [0.0, 0.0, 1.0]])
        g = g.with_sh_degree(0)
        rgb, alpha, _ = rasterization(g.means, g.normalized_quats(), g.activated_scales(),
                                      g.activated_opacities(), g.rgb().clamp(0, 1), viewmat[None], k[None],
                                      self.width, self.height, backend="torch")
        return torch.cat([rgb[0], alpha[0]], -1).numpy()


# Four opaque Gaussians that say where each axis points and how a rotation reads: red left (-x),
# blue right (+x), green up (-y), and a yellow needle through the centre whose long axis is x in
# its own frame, turned 90 degrees about z so it stands vertical. Read as (x, y, z, w), the
# quaternion would turn it about x instead and the needle would lie flat.
# Two gsplat.js 1.2.9 quirks shape the layout, neither about our files: its depth sort drops
# splats when all share one depth (so depths differ), and its vertex shader makes NaN corners for
# a splat whose screen footprint is exactly axis-aligned with the wider axis along x (an isotropic
# blob exactly on the y = 0 or x = 0 line), so the round blobs sit slightly off both axes.
MARKERS = {
    "red": {"xyz": (-1.3, 0.1, 0.3), "rgb": (1.0, 0.0, 0.0)},
    "blue": {"xyz": (1.3, -0.1, 0.2), "rgb": (0.0, 0.0, 1.0)},
    "green": {"xyz": (0.1, -1.0, 0.1), "rgb": (0.0, 1.0, 0.0)},
    "yellow": {"xyz": (0.0, 0.0, 0.0), "rgb": (1.0, 1.0, 0.0)},
}
NEEDLE_SIGMA = (0.3, 0.05, 0.05)
BLOB_SIGMA = 0.3


def marker_scene(sh_degree: int = 0) -> Gaussians:
    """The four markers above, opacity 0.99; SH above degree 0 are zero (view-independent)."""
    names = list(MARKERS)
    means = np.array([MARKERS[n]["xyz"] for n in names], np.float32)
    sigma = np.array([NEEDLE_SIGMA if n == "yellow" else (BLOB_SIGMA,) * 3 for n in names], np.float32)
    s = math.sqrt(0.5)
    quats = np.array([[s, 0, 0, s] if n == "yellow" else [1, 0, 0, 0] for n in names], np.float32)
    sh0 = np.stack([_sh0_of_rgb(MARKERS[n]["rgb"]) for n in names])[:, None, :]
    n = len(names)
    return Gaussians(torch.from_numpy(means), torch.from_numpy(np.log(sigma)), torch.from_numpy(quats),
                     torch.full((n,), math.log(0.99 / 0.01)), torch.from_numpy(sh0),
                     torch.zeros(n, K_OF_DEGREE[sh_degree], 3))


def random_scene(n: int, sh_degree: int, seed: int = 0, extent: float = 2.0) -> Gaussians:
    """N Gaussians with values spread over what real captures hold: positions in a cube of half
    size `extent`, sigmas 0.02-0.37, any rotation, opacities 5%-95%, colours in range, SH rest
    within +-0.3 (inside every format's range)."""
    rng = np.random.default_rng(seed)
    f32 = lambda a: torch.from_numpy(np.asarray(a, np.float32))  # noqa: E731
    return Gaussians(
        f32(rng.uniform(-extent, extent, (n, 3))),
        f32(rng.uniform(-4.0, -1.0, (n, 3))),
        f32(rng.standard_normal((n, 4))),
        f32(rng.uniform(-3.0, 3.0, n)),
        f32(rng.uniform(-1.6, 1.6, (n, 1, 3))),
        f32(rng.uniform(-0.3, 0.3, (n, K_OF_DEGREE[sh_degree], 3))),
    )


def view_scene(n: int = 1000, seed: int = 1) -> Gaussians:
    """N small Gaussians filling the default View's field, for whole-picture comparisons.

    Keep N above 512: gsplat.js 1.2.9 leaves smaller scenes in file order instead of depth
    order (measured here: two overlapping splats come out in file order at N <= 502, sorted at
    N >= 600), which would make the picture differ for reasons that are not in the file."""
    g = random_scene(n, 0, seed, extent=1.3)
    return Gaussians(g.means, g.scales.clamp(-3.5, -2.3), g.quats,
                     g.opacities.abs() + 0.5,  # 62%-97%: every splat shows
                     g.sh0, g.shN)


# ------------------------------------------------------------------------------- comparisons


def match_by_position(got: Gaussians, want: Gaussians) -> np.ndarray:
    """Index into `want` of each of `got`'s Gaussians (nearest position): writers may reorder
    (Morton order). Fails unless every Gaussian is matched exactly once."""
    a, b = got.means.double().numpy(), want.means.double().numpy()
    assert len(a) == len(b), f"{len(a)} Gaussians came back, {len(b)} were written"
    d2 = (a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None, :]
    index = d2.argmin(1)
    assert len(np.unique(index)) == len(b), "Gaussians came back at positions that match no written one"
    return index


def differences(got: Gaussians, want: Gaussians) -> dict[str, float]:
    """Max abs difference per quantity after matching: means, log scales, rotations (unit, up to
    sign), opacity (activated: logits of stored bytes blow up near 0 and 1), sh0, shN."""
    want = want[torch.from_numpy(match_by_position(got, want))]
    out = {}
    for name in ("means", "scales", "sh0"):
        out[name] = float((getattr(got, name) - getattr(want, name)).abs().max())
    qa, qb = got.normalized_quats(), want.normalized_quats()
    out["quats"] = float(torch.minimum((qa - qb).abs().amax(1), (qa + qb).abs().amax(1)).max())
    out["opacity"] = float((got.activated_opacities() - want.activated_opacities()).abs().max())
    assert got.shN.shape[1] == want.shN.shape[1], (
        f"SH degree came back as {got.sh_degree}, was written as {want.sh_degree}")
    out["shN"] = float((got.shN - want.shN).abs().max()) if want.shN.numel() else 0.0
    return out


def assert_within(diffs: dict[str, float], tolerance: dict[str, float], what: str) -> None:
    over = {k: f"{diffs[k]:.3g} > {tolerance[k]:.3g}" for k in tolerance if not diffs[k] <= tolerance[k]}
    assert not over, f"{what}: beyond the format's quantization: {over} (all: {diffs})"
