"""What `splatforge filter` and `splatforge.io.filters.filter_scene` apply: the `SceneFilter` options
and their checks, in plain Python (no torch), so the command line reads them without loading torch."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from splatforge.errors import SplatforgeError


@dataclass
class SceneFilter:
    """Which filters `filter_scene` applies (None: not applied), in this order."""

    # keep Gaussians whose centre lies in the box x0 y0 z0 x1 y1 z1 (world units, inclusive)
    box: Optional[tuple[float, float, float, float, float, float]] = None
    # keep Gaussians whose centre lies in the sphere cx cy cz r (world units)
    sphere: Optional[tuple[float, float, float, float]] = None
    min_opacity: Optional[float] = None  # keep Gaussians at least this opaque (0..1)
    # keep Gaussians whose largest standard deviation is at most this (world units)
    max_size: Optional[float] = None
    # keep Gaussians no larger than this percentile (0..100] of the sizes (instead of --max-size)
    max_size_percentile: Optional[float] = None
    # keep this many Gaussians, the most visible ones (opacity x area of the two largest axes)
    decimate: Optional[int] = None

    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in self.__dataclass_fields__)

    def check(self) -> None:
        """Raise SplatforgeError for arguments no scene could satisfy (before any file is read)."""
        if self.is_empty():
            raise SplatforgeError("no filter given: use a crop box or sphere, a minimum opacity, a maximum size "
                                  "or decimation (to change only the format, use `splatforge convert`)")
        if self.box is not None:
            box = vector(self.box, 6, "the crop box (x0 y0 z0 x1 y1 z1)")
            check_box(box[:3], box[3:])
        if self.sphere is not None:
            sphere = vector(self.sphere, 4, "the crop sphere (cx cy cz r)")
            check_radius(float(sphere[3]))
        if self.min_opacity is not None:
            check_opacity(self.min_opacity)
        if self.max_size is not None and self.max_size_percentile is not None:
            raise SplatforgeError("give either a maximum size or a size percentile, not both")
        if self.max_size is not None:
            check_size(self.max_size)
        if self.max_size_percentile is not None:
            check_percentile(self.max_size_percentile)
        if self.decimate is not None:
            check_count(self.decimate)


def vector(values: Sequence[float], n: int, what: str) -> list[float]:
    """`n` finite numbers, or a SplatforgeError naming `what`."""
    values = [float(v) for v in values]
    if len(values) != n:
        raise SplatforgeError(f"{what} takes {n} numbers, got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise SplatforgeError(f"{what} must be finite numbers, got {values}")
    return values


def check_box(lo: Sequence[float], hi: Sequence[float]) -> None:
    if any(l > h for l, h in zip(lo, hi)):
        axes = ", ".join(f"{a}: {float(l):g} > {float(h):g}" for a, l, h in zip("xyz", lo, hi) if l > h)
        raise SplatforgeError(f"the crop box's minimum exceeds its maximum ({axes}); give x0 y0 z0 x1 y1 z1 "
                              "with x0 <= x1, y0 <= y1, z0 <= z1")


def check_radius(radius: float) -> None:
    if not (math.isfinite(radius) and radius > 0):
        raise SplatforgeError(f"the crop sphere's radius must be a positive number, got {radius:g}")


def check_opacity(min_opacity: float) -> None:
    if not 0.0 <= min_opacity <= 1.0:
        raise SplatforgeError(f"the minimum opacity must be in [0, 1], got {min_opacity:g}")


def check_size(max_size: float) -> None:
    if not (math.isfinite(max_size) and max_size > 0):
        raise SplatforgeError(f"the maximum size must be a positive number of world units, got {max_size:g}")


def check_percentile(percentile: float) -> None:
    if not 0.0 < percentile <= 100.0:
        raise SplatforgeError(f"the size percentile must be in (0, 100], got {percentile:g}")


def check_count(n: int, available: Optional[int] = None) -> None:
    if isinstance(n, bool) or int(n) != n:
        raise SplatforgeError(f"decimation takes a whole number of Gaussians, got {n!r}")
    if n < 1:
        raise SplatforgeError(f"cannot decimate to {n} Gaussians: keep at least 1")
    if available is not None and n > available:
        raise SplatforgeError(f"cannot decimate to {n:,} Gaussians: only {available:,} are left to "
                              "decimate; ask for at most that many")


