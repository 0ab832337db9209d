"""Where `predict` writes each input's scene when given a folder: one name per image, never two
images on one name.

The input folder's tree is kept (`a/x.jpg` -> `OUT/a/x.ply`, `b/x.jpg` -> `OUT/b/x.ply`), and
images of one folder that share a stem keep their extension (`x.jpg` -> `x.jpg.ply`, `x.png` ->
`x.png.ply`); the rest get the plain stem (`photo.jpg` -> `photo.ply`). Names are compared
without case, so the result is also safe on case-insensitive file systems (`x.jpg` and `X.JPG`,
which still clash with their extensions, get a short hash of their relative path). A name
depends only on the image's own folder, not on the order of the inputs.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from splatforge.errors import SplatforgeError

__all__ = ["output_paths"]


def output_paths(images: Sequence[str | os.PathLike], root: str | os.PathLike, out_dir: str | os.PathLike,
                 suffix: str = ".ply") -> list[Path]:
    """One distinct output path per image (see the module docstring), in the order given.

    Args:
        images: image files, all inside `root`.
        root: the folder the user named (for a single file: its folder).
        out_dir: where the outputs go; sub-folders mirror `root`'s.
        suffix: the outputs' extension. Other files of one image can replace it
            (`path.with_suffix(".mp4")`) and stay distinct.
    """
    root = Path(root)
    relative = []
    for image in images:
        try:
            relative.append(PurePosixPath(Path(image).relative_to(root).as_posix()))
        except ValueError:
            raise SplatforgeError(f"{image} is not inside {root}") from None
    if len({r.as_posix() for r in relative}) != len(relative):
        raise SplatforgeError("the same image is listed twice")

    def clashing(names: list[str]) -> set[int]:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, name in enumerate(names):
            groups[name.casefold()].append(i)
        return {i for group in groups.values() if len(group) > 1 for i in group}

    names = [(r.parent / r.stem).as_posix() for r in relative]
    for i in clashing(names):
        names[i] = relative[i].as_posix()
    for i in clashing(names):
        names[i] = f"{relative[i].as_posix()}-{hashlib.sha1(relative[i].as_posix().encode()).hexdigest()[:8]}"
    return [Path(out_dir) / f"{name}{suffix}" for name in names]
