"""`CaptureOptions`: how `load_capture` reads a capture and splits its views, in one place for the
library (`load_capture`'s defaults) and the command line (`splatforge train`, `eval`, `render`).

Standard library only, so the commands' `--help` shows these defaults without loading numpy or Pillow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Sequence, get_args

# where starting points come from (see `init_points`)
InitSource = Literal["auto", "sfm", "triangulate", "random", "none"]
INIT_CHOICES: tuple[str, ...] = get_args(InitSource)


@dataclass(frozen=True)
class CaptureOptions:
    """Which photos train and which are held out, at what size, and the starting points:
    `load_capture(path, **dataclasses.asdict(options))`."""

    # shrink photos by this integer factor (COLMAP: images_N/, made and cached when missing); None: the
    # smallest factor that brings the long side to at most `long_side_limit` (1000 px), and one line says so
    downscale: Optional[int] = None
    # hold out every Nth photo (sorted by name; 0: none); None: the capture's own split (Blender's test
    # json, a transforms.json's test_filenames), else every 8th
    test_every: Optional[int] = None
    # names of held-out photos: as the capture writes them (a json's file_path) or bare file names;
    # overrides test_every
    test_list: Optional[Sequence[str]] = None
    # transforms.json and Blender: drop frames whose image file is missing (with a printed count) instead of
    # an error
    skip_missing: bool = False
    # "auto" (the capture's points, else triangulated from the photos with the poses fixed, else random in
    # the cameras' common view), "sfm", "triangulate", "random", or "none" (viewing, evaluation)
    init: InitSource = "auto"
    # how many points init "random" (or "auto" falling back to it) spreads in the cameras' common view
    num_random_points: int = 50_000
