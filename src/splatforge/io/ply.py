"""INRIA 3DGS PLY files: the Gaussian vertex layout, as numpy arrays or `Gaussians`.

- `read_splat_ply` / `write_splat_ply`: the INRIA 3DGS vertex layout as float32 numpy arrays
  (extra elements, such as SHARP's, kept), on the general reader/writer of `io.ply_format`;
- `read_ply` / `write_ply`: thin wrappers to and from `splatforge.core.gaussians.Gaussians`;
- `describe_ply` / `format_description`: what `splatforge info` prints.

Example::

    g = read_splat_ply("scene.ply")          # g["means"]: [N, 3] float32, g["extra"]: {...}
    write_splat_ply("copy.ply", **{k: g[k] for k in SPLAT_FIELDS}, normals=g["normals"],
                    extra_elements=g["extra"])
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, Mapping, Sequence, Union

import numpy as np
from numpy.lib import recfunctions

from splatforge.errors import FormatError, SplatforgeError
from splatforge.io.ply_format import PlyContents, read_ply_elements, write_ply_elements

if TYPE_CHECKING:
    from splatforge.core.gaussians import Gaussians

__all__ = ["SPLAT_FIELDS", "read_splat_ply", "write_splat_ply", "read_ply", "write_ply", "describe_ply",
           "format_description", "read_ply_elements", "write_ply_elements", "PlyContents"]

PathLike = Union[str, os.PathLike]

SPLAT_FIELDS = ("means", "scales", "quats", "opacities", "sh0", "shN")
_REQUIRED = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
             "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
_NORMALS = ["nx", "ny", "nz"]
_F_REST_RE = re.compile(r"f_rest_([0-9]+)", re.ASCII)
_SH_DEGREE_OF_K = {0: 0, 3: 1, 8: 2, 15: 3}


# ---------------------------------------------------------------------------- INRIA 3DGS layout


def _splat_layout(path: PathLike, vertex: np.ndarray) -> tuple[list[str], bool]:
    """Names of the f_rest properties in index order, and whether nx ny nz are present."""
    fields = vertex.dtype.names or ()
    missing = [n for n in _REQUIRED if n not in fields]
    if missing:
        raise FormatError(f"{path}: the vertex element lacks the 3DGS properties {', '.join(missing)}")
    rest = {int(m.group(1)): n for n in fields if (m := _F_REST_RE.fullmatch(n))}
    n_rest = sum(1 for n in fields if _F_REST_RE.fullmatch(n))
    if n_rest not in (0, 9, 24, 45):
        raise FormatError(f"{path}: {n_rest} f_rest properties; 3DGS files have 0, 9, 24 or 45 "
                          "(SH degree 0 to 3)")
    if sorted(rest) != list(range(n_rest)):
        raise FormatError(f"{path}: the f_rest properties are not numbered 0..{n_rest - 1}")
    has_normals = all(n in fields for n in _NORMALS)
    used = _REQUIRED + list(rest.values()) + (_NORMALS if has_normals else [])
    for n in used:
        if vertex.dtype[n].kind not in "iuf":
            raise FormatError(f"{path}: vertex property '{n}' is a list, not a number")
    return [rest[i] for i in range(n_rest)], has_normals


def read_splat_ply(path: PathLike) -> dict[str, Any]:
    """Read an INRIA 3DGS PLY file (also SHARP's) into float32 numpy arrays, pre-activation.

    Returns a dict with ``means [N,3]``, ``scales [N,3]`` (log), ``quats [N,4]`` (w,x,y,z, raw),
    ``opacities [N]`` (logit), ``sh0 [N,1,3]``, ``shN [N,K,3]`` with K in {0, 3, 8, 15}
    (``shN[n,k,c] = f_rest_{c*K+k}``), ``normals [N,3]`` or None, and ``extra``: every element
    other than ``vertex`` as a structured array, so they can be written back. Properties are
    found by name (any order, any numeric type); other vertex properties are ignored.
    """
    elements = read_ply_elements(path).elements
    if "vertex" not in elements:
        raise FormatError(f"{path}: no 'vertex' element, so it holds no Gaussians")
    vertex = elements["vertex"]
    rest, has_normals = _splat_layout(path, vertex)
    names = (_REQUIRED[:3] + (_NORMALS if has_normals else []) + _REQUIRED[3:6] + rest
             + _REQUIRED[6:])
    # A view, not a copy, when all are float32 (the usual case): one copy per block below.
    table = recfunctions.structured_to_unstructured(vertex[names], dtype=np.float32)
    n, k = len(vertex), len(rest) // 3
    blocks = np.split(table, np.cumsum([3, 3 * has_normals, 3, 3 * k, 1, 3]), axis=1)
    means, normals, dc, f_rest, opacity, scales, quats = map(np.ascontiguousarray, blocks)
    return {
        "means": means, "scales": scales, "quats": quats, "opacities": opacity.reshape(n),
        "sh0": dc.reshape(n, 1, 3),
        "shN": np.ascontiguousarray(f_rest.reshape(n, 3, k).transpose(0, 2, 1)),
        "normals": normals if has_normals else None,
        "extra": {name: arr for name, arr in elements.items() if name != "vertex"},
    }


def _float32(name: str, value: Any, shape: tuple[int | None, ...], shown: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        raise SplatforgeError(f"{name} must have shape {shown}, got {list(arr.shape)}")
    return arr


def write_splat_ply(
    path: PathLike,
    means: Any,      # [N, 3]
    scales: Any,     # [N, 3] log scales
    quats: Any,      # [N, 4] (w, x, y, z), not necessarily normalized
    opacities: Any,  # [N] logits
    sh0: Any,        # [N, 1, 3]
    shN: Any,        # [N, K, 3], K in {0, 3, 8, 15}
    normals: Any = None,  # [N, 3] or None
    extra_elements: Mapping[str, np.ndarray] | None = None,
    comments: Sequence[str] = (),
) -> None:
    """Write Gaussians as an INRIA 3DGS PLY (binary little-endian float32), values as given.

    Vertex properties: ``x y z [nx ny nz] f_dc_0..2 f_rest_0..3K-1 opacity scale_0..2 rot_0..3``,
    f_rest channel-major. ``extra_elements`` (structured arrays, e.g. SHARP's ``extrinsic``,
    ``intrinsic``, ...) follow the vertex element. Written atomically.
    """
    means = _float32("means", means, (None, 3), "[N, 3]")
    n = len(means)
    scales = _float32("scales", scales, (n, 3), "[N, 3]")
    quats = _float32("quats", quats, (n, 4), "[N, 4]")
    opacities = _float32("opacities", opacities, (n,), "[N]")
    sh0 = _float32("sh0", sh0, (n, 1, 3), "[N, 1, 3]")
    shN = _float32("shN", shN, (n, None, 3), "[N, K, 3]")
    k = shN.shape[1]
    if k not in _SH_DEGREE_OF_K:
        raise SplatforgeError(f"shN must have K = 0, 3, 8 or 15 coefficients (SH degree 0-3), got {k}")
    extra = dict(extra_elements or {})
    if "vertex" in extra:
        raise SplatforgeError("extra_elements cannot contain 'vertex': that is the Gaussians")
    names = ["x", "y", "z"]
    columns = [means]
    if normals is not None:
        names += _NORMALS
        columns.append(_float32("normals", normals, (n, 3), "[N, 3]"))
    names += _REQUIRED[3:6] + [f"f_rest_{i}" for i in range(3 * k)] + _REQUIRED[6:]
    columns += [sh0.reshape(n, 3), shN.transpose(0, 2, 1).reshape(n, 3 * k),
                opacities.reshape(n, 1), scales, quats]
    table = np.ascontiguousarray(np.concatenate(columns, axis=1))
    vertex = table.view(np.dtype([(name, "f4") for name in names]))[:, 0]
    write_ply_elements(path, {"vertex": vertex, **extra}, comments)


def read_ply(path: PathLike) -> Gaussians:
    """Read an INRIA 3DGS PLY file into a `Gaussians` (CPU float32 tensors, pre-activation).

    Normals and extra elements are dropped; use `read_splat_ply` to keep them.
    """
    import torch

    from splatforge.core.gaussians import Gaussians

    arrays = read_splat_ply(path)
    return Gaussians(**{key: torch.from_numpy(arrays[key]) for key in SPLAT_FIELDS})


def write_ply(path: PathLike, gaussians: Gaussians, normals: Any = None,  # [N, 3] or None
              extra_elements: Mapping[str, np.ndarray] | None = None,
              comments: Sequence[str] = ()) -> None:
    """Write a `Gaussians` as an INRIA 3DGS PLY file; see `write_splat_ply` for the layout."""
    import torch

    def as_numpy(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.detach().to("cpu", torch.float32).numpy()
        return value

    arrays = {key: as_numpy(getattr(gaussians, key)) for key in SPLAT_FIELDS}
    write_splat_ply(path, **arrays, normals=as_numpy(normals), extra_elements=extra_elements,
                    comments=comments)


# ------------------------------------------------------------------------------------ description


def describe_ply(path: PathLike) -> dict[str, Any]:
    """Summarize a PLY file (what ``splatforge info FILE`` prints).

    Keys: ``path``, ``file_size`` (bytes), ``format``, ``count`` (vertices), ``sh_degree`` (0-3,
    or None when the vertex element is not a 3DGS layout; ``problem`` then says why),
    ``has_normals``, ``bounds`` (``((xmin, ymin, zmin), (xmax, ymax, zmax))`` over finite
    positions, or None), ``extra_elements`` (names), ``element_counts`` and ``comments``.
    """
    contents = read_ply_elements(path)
    vertex = contents.elements.get("vertex", np.empty(0, np.dtype([])))
    fields = vertex.dtype.names or ()
    sh_degree, problem = None, None
    try:
        rest, _ = _splat_layout(path, vertex)
        sh_degree = _SH_DEGREE_OF_K[len(rest) // 3]
    except FormatError as e:
        problem = str(e).removeprefix(f"{path}: ")
    bounds = None
    if all(c in fields and vertex.dtype[c].kind in "iuf" for c in "xyz"):
        xyz = recfunctions.structured_to_unstructured(vertex[["x", "y", "z"]], dtype=np.float64)
        xyz = xyz[np.isfinite(xyz).all(axis=1)]
        if len(xyz):
            bounds = (tuple(xyz.min(axis=0).tolist()), tuple(xyz.max(axis=0).tolist()))
    return {
        "path": str(path), "file_size": os.path.getsize(path), "format": contents.format,
        "count": len(vertex), "sh_degree": sh_degree, "problem": problem,
        "has_normals": all(c in fields for c in _NORMALS), "bounds": bounds,
        "extra_elements": [name for name in contents.elements if name != "vertex"],
        "element_counts": {name: len(arr) for name, arr in contents.elements.items()},
        "comments": list(contents.comments),
    }


def format_description(d: Mapping[str, Any]) -> str:
    """Render `describe_ply`'s dict as a few aligned lines for a terminal."""
    lines = [f"{d['path']}: {d['file_size'] / 1e6:.1f} MB ({d['file_size']:,} bytes), {d['format']}"]
    if d["sh_degree"] is not None:
        lines.append(f"  gaussians   {d['count']:,} (SH degree {d['sh_degree']}, "
                     f"{'with' if d['has_normals'] else 'no'} normals)")
    else:
        lines.append(f"  vertices    {d['count']:,}, not 3DGS Gaussians: {d['problem']}")
    if d["bounds"] is not None:
        lo, hi = d["bounds"]
        lines.append("  bounds      " + "   ".join(
            f"{axis} {a:.4g} .. {b:.4g}" for axis, a, b in zip("xyz", lo, hi)))
    if d["extra_elements"]:
        lines.append("  extra       " + ", ".join(
            f"{name} ({d['element_counts'][name]})" for name in d["extra_elements"]))
    lines += [f"  comment     {c}" for c in d["comments"]]
    return "\n".join(lines)
