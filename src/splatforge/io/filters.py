"""Scene filters: crop to a box or a sphere, drop faint or oversized Gaussians, decimate to N.

Each filter is a function from `Gaussians` to the Gaussians it keeps (in their original order);
`filter_scene` applies several in a fixed order (box, sphere, opacity, size, decimation) and
`filter_file` reads a scene, filters it and writes it in any format `save_scene` knows, as
`splatforge filter` does.

- Size is a Gaussian's largest standard deviation, exp(max(log scales)), in world units: the
  radius of its 1-sigma ellipsoid along its longest axis.
- Decimation keeps the N Gaussians with the highest `visibility`: opacity x the area of the
  Gaussian's two largest axes (sigma_1 sigma_2). That is the area its footprint covers on screen
  when seen face-on, weighted by how much of what lies behind it it hides; trained scenes are
  mostly thin, surface-aligned splats, whose volume (and so opacity x volume^(2/3)) is near zero
  however much of the picture they paint. benchmarks/filter.py compares the two and a random
  subsample in PSNR.

Bad arguments and filters that leave nothing raise SplatforgeError before anything is written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from splatforge.core.gaussians import Gaussians
from splatforge.errors import SplatforgeError
from splatforge.io.filter_spec import (SceneFilter, check_box, check_count, check_opacity, check_percentile,
                                        check_radius, check_size, vector)

__all__ = ["SceneFilter", "crop_box", "crop_sphere", "drop_faint", "drop_large", "decimate", "visibility",
           "volume_visibility", "random_subsample", "sizes", "filter_scene", "filter_file"]


def _vector(values: Sequence[float], n: int, what: str) -> Tensor:
    return torch.tensor(vector(values, n, what), dtype=torch.float64)


def _kept(gaussians: Gaussians, mask: Tensor, what: str) -> Gaussians:
    if not bool(mask.any()):
        raise SplatforgeError(f"{what} keeps none of the {len(gaussians):,} Gaussians; loosen it "
                              "(no output was written)")
    return gaussians[mask.to(gaussians.device)]


def crop_box(gaussians: Gaussians, lo: Sequence[float], hi: Sequence[float]) -> Gaussians:
    """The Gaussians whose centre lies in the axis-aligned box [lo, hi] (inclusive, world units)."""
    lo_t, hi_t = _vector(lo, 3, "the box's minimum corner"), _vector(hi, 3, "the box's maximum corner")
    check_box(lo_t.tolist(), hi_t.tolist())
    means = gaussians.means.detach().to("cpu", torch.float64)
    inside = ((means >= lo_t) & (means <= hi_t)).all(1)
    return _kept(gaussians, inside, f"the crop box {lo_t.tolist()}-{hi_t.tolist()}")


def crop_sphere(gaussians: Gaussians, center: Sequence[float], radius: float) -> Gaussians:
    """The Gaussians whose centre lies within `radius` of `center` (world units)."""
    c = _vector(center, 3, "the sphere's centre")
    check_radius(radius)
    means = gaussians.means.detach().to("cpu", torch.float64)
    inside = (means - c).norm(dim=1) <= radius
    return _kept(gaussians, inside, f"the crop sphere (centre {c.tolist()}, radius {radius:g})")


def drop_faint(gaussians: Gaussians, min_opacity: float) -> Gaussians:
    """The Gaussians with opacity >= `min_opacity` (activated, in [0, 1])."""
    check_opacity(min_opacity)
    opacity = gaussians.activated_opacities().detach().cpu()
    return _kept(gaussians, opacity >= min_opacity, f"the minimum opacity {min_opacity:g}")


def sizes(gaussians: Gaussians) -> Tensor:  # [N]
    """Each Gaussian's largest standard deviation, world units."""
    return gaussians.scales.detach().cpu().double().max(dim=1).values.exp()


def drop_large(gaussians: Gaussians, max_size: float | None = None, percentile: float | None = None) -> Gaussians:
    """The Gaussians whose size (see `sizes`) is at most `max_size` world units, or at most the
    `percentile`-th percentile (0 < p <= 100) of the scene's sizes. Give exactly one."""
    if (max_size is None) == (percentile is None):
        raise SplatforgeError("give either a maximum size in world units or a size percentile, not both "
                              "(or neither)")
    size = sizes(gaussians)
    if percentile is not None:
        check_percentile(percentile)
        limit = float(torch.quantile(size, percentile / 100.0)) if len(size) else 0.0
        what = f"the size percentile {percentile:g} ({limit:.4g} world units)"
    else:
        check_size(max_size)
        limit, what = max_size, f"the maximum size {max_size:g}"
    return _kept(gaussians, size <= limit, what)


def visibility(gaussians: Gaussians) -> Tensor:  # [N]
    """log(opacity x sigma_1 sigma_2), the two largest standard deviations: the decimation score
    (see the module doc). A log, so that tiny and huge splats compare without underflow."""
    log_scales = gaussians.scales.detach().cpu().double()
    largest_two = log_scales.sort(dim=1).values[:, 1:].sum(1)
    return torch.nn.functional.logsigmoid(gaussians.opacities.detach().cpu().double()) + largest_two


def volume_visibility(gaussians: Gaussians) -> Tensor:  # [N]
    """log(opacity x volume^(2/3)): the alternative score benchmarks/filter.py measures."""
    log_scales = gaussians.scales.detach().cpu().double()
    return torch.nn.functional.logsigmoid(gaussians.opacities.detach().cpu().double()) + log_scales.sum(1) * 2 / 3


def decimate(gaussians: Gaussians, n: int, score: Tensor | None = None) -> Gaussians:
    """The `n` Gaussians with the highest `score` ([N], default `visibility`), in their original
    order; ties go to the lower index, so the result does not depend on the sort's internals."""
    check_count(n, len(gaussians))
    score = visibility(gaussians) if score is None else score.detach().cpu().double()
    if score.shape != (len(gaussians),):
        raise ValueError(f"score must be [N] with N={len(gaussians)}, got {tuple(score.shape)}")
    order = torch.argsort(-score, stable=True)
    return gaussians[order[: int(n)].sort().values.to(gaussians.device)]


def random_subsample(gaussians: Gaussians, n: int, seed: int = 0) -> Gaussians:
    """`n` Gaussians drawn uniformly without replacement (the reference decimation is measured
    against), in their original order."""
    check_count(n, len(gaussians))
    pick = torch.randperm(len(gaussians), generator=torch.Generator().manual_seed(seed))[: int(n)]
    return gaussians[pick.sort().values.to(gaussians.device)]


def filter_scene(gaussians: Gaussians, spec: SceneFilter | None = None, **fields) -> Gaussians:
    """`gaussians` through the filters `spec` (or the same fields as keywords: box, sphere,
    min_opacity, max_size, max_size_percentile, decimate) turns on, in the order box, sphere,
    opacity, size, decimation; decimation counts what the other filters left."""
    if spec is None:
        spec = SceneFilter(**fields)
    elif fields:
        raise TypeError("pass a SceneFilter or keyword fields, not both")
    spec.check()
    if len(gaussians) == 0:
        raise SplatforgeError("the scene holds no Gaussians; there is nothing to filter")
    out = gaussians
    if spec.box is not None:
        out = crop_box(out, list(spec.box)[:3], list(spec.box)[3:])
    if spec.sphere is not None:
        out = crop_sphere(out, list(spec.sphere)[:3], float(spec.sphere[3]))
    if spec.min_opacity is not None:
        out = drop_faint(out, spec.min_opacity)
    if spec.max_size is not None or spec.max_size_percentile is not None:
        out = drop_large(out, spec.max_size, spec.max_size_percentile)
    if spec.decimate is not None:
        out = decimate(out, spec.decimate)
    return out


def filter_file(input: str | os.PathLike, output: str | os.PathLike, spec: SceneFilter | None = None,
                overwrite: bool = False, **fields) -> tuple[Gaussians, Gaussians]:
    """Read `input` (any format `load_scene` reads), filter it (see `filter_scene`) and write
    `output` in the format its extension names; returns (input scene, filtered scene).

    An existing `output` is an error unless `overwrite`; every check runs before anything is
    written, and the writers replace the file atomically. Writing SOG needs `splatforge.compress`
    imported first (see `splatforge.io.scene`)."""
    from splatforge.io.scene import format_from_extension, load_scene, save_scene

    if spec is None:
        spec = SceneFilter(**fields)
    elif fields:
        raise TypeError("pass a SceneFilter or keyword fields, not both")
    spec.check()
    output = Path(output)
    if output.exists() and not overwrite:
        raise SplatforgeError(f"{output} already exists; pass --overwrite (overwrite=True) to replace it")
    if format_from_extension(output) is None:
        raise SplatforgeError(f"{output}: cannot tell the format from the name; use one of .ply, .compressed.ply, "
                              ".splat, .spz, .sog")
    if not output.parent.is_dir():
        raise SplatforgeError(f"cannot write {output}: the folder {output.parent} does not exist")
    original = load_scene(input)
    try:
        kept = filter_scene(original, spec)
    except SplatforgeError as e:
        raise SplatforgeError(f"{input}: {e}") from e
    save_scene(kept, output)
    return original, kept
