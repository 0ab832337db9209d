"""PLY files: a general element reader/writer, and the INRIA 3DGS Gaussian layout on top of it.

Two layers:

- `read_ply_elements` / `write_ply_elements`: any PLY file (``binary_little_endian``,
  ``binary_big_endian`` or ``ascii``, version 1.0) as one 1-D numpy structured array per element,
  in file order, with native byte order. List properties (mesh faces) come back as object fields
  holding one 1-D array per row.
- `read_splat_ply` / `write_splat_ply`: the INRIA 3DGS vertex layout as float32 numpy arrays, and
  `read_ply` / `write_ply`, thin wrappers converting to and from
  `splatforge.core.gaussians.Gaussians`.

Reading never trusts the header: every declared size is checked against the bytes the file holds
before anything is allocated, and a malformed file raises `FormatError` naming the file and the
problem, never a partial result.

Example::

    g = read_splat_ply("scene.ply")          # g["means"]: [N, 3] float32, g["extra"]: {...}
    write_splat_ply("copy.ply", **{k: g[k] for k in SPLAT_FIELDS}, normals=g["normals"],
                    extra_elements=g["extra"])
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, NamedTuple, Sequence, Union

import numpy as np
from numpy.lib import recfunctions

from splatforge.errors import FormatError, SplatforgeError

if TYPE_CHECKING:
    from splatforge.core.gaussians import Gaussians

PathLike = Union[str, os.PathLike]

# Both spellings the PLY spec and common writers use -> numpy type codes (byte order added later).
_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
# The writer uses the original names: older readers (and plyfile's output) know only those.
_PLY_NAMES = {"i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort",
              "i4": "int", "u4": "uint", "f4": "float", "f8": "double"}
_FORMATS = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": ""}
_MAX_HEADER_BYTES = 1 << 20
# int() alone would also accept "+5", "1_000" and non-ASCII digits.
_COUNT_RE = re.compile(r"[0-9]+", re.ASCII)

SPLAT_FIELDS = ("means", "scales", "quats", "opacities", "sh0", "shN")
_REQUIRED = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
             "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
_NORMALS = ["nx", "ny", "nz"]
_F_REST_RE = re.compile(r"f_rest_([0-9]+)", re.ASCII)
_SH_DEGREE_OF_K = {0: 0, 3: 1, 8: 2, 15: 3}


class PlyContents(NamedTuple):
    """What `read_ply_elements` returns; unpacks as ``elements, comments, format``."""

    elements: dict[str, np.ndarray]  # element name -> 1-D structured array, in file order
    comments: list[str]              # header ``comment`` lines without the keyword
    format: str                      # "binary_little_endian", "binary_big_endian" or "ascii"


class _Property(NamedTuple):
    name: str
    code: str                   # numpy type code of the value (of the items, for a list)
    count_code: str | None = None  # type code of a list's length; None for a scalar


class _Element(NamedTuple):
    name: str
    count: int
    props: list[_Property]

    def native_dtype(self) -> np.dtype:
        return np.dtype([(p.name, object if p.count_code else p.code) for p in self.props])


# ----------------------------------------------------------------------------------------- reading


def read_ply_elements(path: PathLike) -> PlyContents:
    """Read every element of a PLY file into numpy structured arrays (native byte order).

    Raises `FormatError` for anything that is not a well-formed PLY file of the supported
    formats, and `SplatforgeError` when the file cannot be opened.
    """
    try:
        f = open(path, "rb")
    except OSError as e:
        raise SplatforgeError(f"cannot open {path}: {e.strerror or e}") from e
    with f:
        size = os.fstat(f.fileno()).st_size
        fmt, header, comments, data_start = _parse_header(path, f.read(min(size, _MAX_HEADER_BYTES)))
        f.seek(data_start)
        if fmt == "ascii":
            elements = _read_ascii(path, f.read(), header)
        else:
            elements = _read_binary(path, f, size, header, _FORMATS[fmt])
    return PlyContents(elements, comments, fmt)


def _parse_header(path: PathLike, head: bytes) -> tuple[str, list[_Element], list[str], int]:
    if not (head.startswith(b"ply\n") or head.startswith(b"ply\r\n")):
        raise FormatError(f"{path}: not a PLY file (it does not start with a 'ply' line)")
    fmt, elements, comments = None, [], []
    pos, lineno = head.index(b"\n") + 1, 1
    while True:
        nl = head.find(b"\n", pos)
        line = head[pos: len(head) if nl < 0 else nl].decode("utf-8", "replace").strip()
        tokens, lineno, pos = line.split(), lineno + 1, nl + 1
        where = f"{path}: PLY header line {lineno} ({line[:80]!r})"
        if tokens == ["end_header"]:
            break
        if nl < 0:
            raise FormatError(f"{path}: PLY header has no 'end_header' line in its first "
                              f"{len(head)} bytes (truncated, or not a PLY file)")
        key = tokens[0] if tokens else ""
        if key in ("", "obj_info"):
            continue
        if key == "comment":
            comments.append(line[len("comment"):].strip())
        elif key == "format":
            if fmt is not None or len(tokens) != 3 or tokens[1] not in _FORMATS:
                raise FormatError(f"{where}: expected one 'format <{'|'.join(_FORMATS)}> 1.0'")
            fmt = tokens[1]
        elif key == "element":
            if len(tokens) != 3 or not _COUNT_RE.fullmatch(tokens[2]):
                raise FormatError(f"{where}: expected 'element <name> <count>'")
            if any(e.name == tokens[1] for e in elements):
                raise FormatError(f"{where}: element '{tokens[1]}' is declared twice")
            elements.append(_Element(tokens[1], int(tokens[2]), []))
        elif key == "property":
            if not elements:
                raise FormatError(f"{where}: property before any element")
            if len(tokens) == 3 and tokens[1] in _TYPES:
                prop = _Property(tokens[2], _TYPES[tokens[1]])
            elif (len(tokens) == 5 and tokens[1] == "list" and tokens[3] in _TYPES
                  and _TYPES.get(tokens[2], "f")[0] in "iu"):
                prop = _Property(tokens[4], _TYPES[tokens[3]], _TYPES[tokens[2]])
            else:
                raise FormatError(f"{where}: expected 'property <type> <name>' or 'property list "
                                  f"<int type> <type> <name>', types among {', '.join(_TYPES)}")
            if any(p.name == prop.name for p in elements[-1].props):
                raise FormatError(f"{where}: property '{prop.name}' is declared twice")
            elements[-1].props.append(prop)
        else:
            raise FormatError(f"{where}: unknown keyword '{key}'")
    if fmt is None:
        raise FormatError(f"{path}: PLY header has no 'format' line")
    for e in elements:
        if e.count and not e.props:
            raise FormatError(f"{path}: element '{e.name}' has {e.count} rows but no properties")
    return fmt, elements, comments, len(head) if nl < 0 else nl + 1


def _truncated(path: PathLike, el: _Element, need: int, have: int, unit: str) -> FormatError:
    return FormatError(f"{path}: element '{el.name}' declares {el.count} rows, which need at least "
                       f"{need} {unit} but only {have} remain (truncated file or wrong header)")


def _read_binary(path: PathLike, f: Any, size: int, header: list[_Element],
                 endian: str) -> dict[str, np.ndarray]:
    out = {}
    for el in header:
        remaining = size - f.tell()
        if all(p.count_code is None for p in el.props):
            file_dtype = np.dtype([(p.name, endian + p.code) for p in el.props])
            nbytes = el.count * file_dtype.itemsize
            if nbytes > remaining:  # checked before allocating, so a lying count costs nothing
                raise _truncated(path, el, nbytes, remaining, "bytes")
            buf = bytearray(nbytes)  # bytearray, not bytes, so the arrays are writable
            if f.readinto(buf) != nbytes:
                raise _truncated(path, el, nbytes, remaining, "bytes")
            arr = np.frombuffer(buf, file_dtype) if nbytes else np.empty(el.count, file_dtype)
            out[el.name] = arr if file_dtype.isnative else arr.astype(el.native_dtype())
            continue
        # Rows with list properties have no fixed size: walk them one at a time.
        start = f.tell()
        min_row = sum(np.dtype(p.count_code or p.code).itemsize for p in el.props)
        if el.count * min_row > remaining:
            raise _truncated(path, el, el.count * min_row, remaining, "bytes")
        data, pos = f.read(), 0

        def take(code: str, n: int) -> np.ndarray:
            nonlocal pos
            nbytes = n * np.dtype(code).itemsize
            if pos + nbytes > len(data):
                raise FormatError(f"{path}: element '{el.name}' runs past the end of the file")
            items = np.frombuffer(data, endian + code, n, pos).astype(code)
            pos += nbytes
            return items

        out[el.name] = _read_rows(path, el, take)
        f.seek(start + pos)
    return out


def _read_ascii(path: PathLike, data: bytes, header: list[_Element]) -> dict[str, np.ndarray]:
    tokens, pos, out = data.split(), 0, {}
    for el in header:
        if all(p.count_code is None for p in el.props):
            need = el.count * len(el.props)
            if need > len(tokens) - pos:
                raise _truncated(path, el, need, len(tokens) - pos, "values")
            table = np.array(tokens[pos: pos + need], dtype=bytes).reshape(el.count, len(el.props))
            arr = np.empty(el.count, el.native_dtype())
            for j, p in enumerate(el.props):
                arr[p.name] = _parse_ascii(path, el, p.code, table[:, j])
            out[el.name] = arr
            pos += need
            continue
        if el.count * len(el.props) > len(tokens) - pos:
            raise _truncated(path, el, el.count * len(el.props), len(tokens) - pos, "values")

        def take(code: str, n: int) -> np.ndarray:
            nonlocal pos
            if pos + n > len(tokens):
                raise FormatError(f"{path}: element '{el.name}' runs past the end of the file")
            pos += n
            return _parse_ascii(path, el, code, np.array(tokens[pos - n: pos], dtype=bytes))

        out[el.name] = _read_rows(path, el, take)
    return out


def _parse_ascii(path: PathLike, el: _Element, code: str, values: np.ndarray) -> np.ndarray:
    try:
        if code[0] == "f":
            with np.errstate(over="ignore"):  # 1e300 as a float is inf, as in C readers
                return values.astype(np.float64).astype(code)
        ints = values.astype(np.int64)
    except (ValueError, OverflowError):
        raise FormatError(f"{path}: element '{el.name}' holds a value that is not a "
                          f"{_PLY_NAMES[code]}") from None
    info = np.iinfo(code)
    if ints.size and (ints.min() < info.min or ints.max() > info.max):
        raise FormatError(f"{path}: element '{el.name}' holds a value out of range for "
                          f"{_PLY_NAMES[code]}")
    return ints.astype(code)


def _read_rows(path: PathLike, el: _Element, take: Callable[[str, int], np.ndarray]) -> np.ndarray:
    columns: list[list[Any]] = [[] for _ in el.props]
    for _ in range(el.count):
        for p, column in zip(el.props, columns):
            if p.count_code is None:
                column.append(take(p.code, 1)[0])
                continue
            n = int(take(p.count_code, 1)[0])
            if n < 0:
                raise FormatError(f"{path}: element '{el.name}' has a list of negative length")
            column.append(take(p.code, n))
    arr = np.empty(el.count, el.native_dtype())
    for p, column in zip(el.props, columns):
        target = arr[p.name]
        for i, value in enumerate(column):  # item by item: numpy would stack equal-length lists
            target[i] = value
    return arr


# ----------------------------------------------------------------------------------------- writing


def write_ply_elements(path: PathLike, elements: Mapping[str, np.ndarray],
                       comments: Sequence[str] = ()) -> None:
    """Write elements (1-D structured arrays, in mapping order) as a binary little-endian PLY.

    Field types int8..int32, uint8..uint32, float32 and float64 are stored as themselves; object
    fields holding 1-D arrays are stored as list properties. The file is written to a temporary
    name in the same directory and renamed, so readers never see a partial file.
    """
    header = ["ply", "format binary_little_endian 1.0"]
    for comment in comments:
        if "\n" in comment or "\r" in comment:
            raise SplatforgeError(f"PLY comment {comment[:40]!r} contains a line break")
        header.append(f"comment {comment}".rstrip())
    bodies: list[Any] = []
    for name, arr in elements.items():
        if not re.fullmatch(r"\S+", name) or not arr.dtype.names or arr.ndim != 1:
            raise SplatforgeError(f"PLY element {name!r} must have a name without spaces and be a "
                                  f"1-D numpy structured array, got {arr.dtype} {arr.shape}")
        header.append(f"element {name} {len(arr)}")
        fields = []  # (field, value code, list-length code or None)
        for field in arr.dtype.names:
            ftype, count = arr.dtype[field], None
            if ftype == object:  # a list property: one 1-D array per row
                rows = [np.ravel(v) for v in arr[field]]
                ftype = np.concatenate(rows).dtype if rows else np.dtype("i4")
                count = "u1" if max(map(len, rows), default=0) < 256 else "u4"
            code = ftype.str[1:]
            if not re.fullmatch(r"\S+", field) or ftype.shape or code not in _PLY_NAMES:
                raise SplatforgeError(
                    f"PLY cannot store property {field!r} of element '{name}' with dtype {ftype}: "
                    "names must have no spaces, types be (u)int8-32, float32 or float64")
            fields.append((field, code, count))
            header.append(f"property list {_PLY_NAMES[count]} {_PLY_NAMES[code]} {field}"
                          if count else f"property {_PLY_NAMES[code]} {field}")
        bodies.extend(_element_bytes(arr, fields))
    header.append("end_header\n")
    _write_atomic(path, ["\n".join(header).encode("utf-8"), *bodies])


def _element_bytes(arr: np.ndarray, fields: list[tuple[str, str, str | None]]) -> list[Any]:
    if all(count is None for _, _, count in fields):
        # Structured casts go by position, and `fields` is in arr's field order, so this is by
        # name too; it is a no-op for arrays already packed little-endian (write_splat_ply's).
        packed = np.dtype([(f, "<" + c) for f, c, _ in fields])
        return [np.ascontiguousarray(arr).astype(packed, copy=False).view(np.uint8)]
    chunks = []
    for row in arr:
        for f, code, count in fields:
            if count is None:
                chunks.append(np.asarray(row[f], "<" + code).tobytes())
            else:
                items = np.ravel(row[f]).astype("<" + code)
                chunks += [np.asarray(len(items), "<" + count).tobytes(), items.tobytes()]
    return [b"".join(chunks)]


def _write_atomic(path: PathLike, chunks: Sequence[Any]) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    # os.open with 0o666 lets the umask decide the mode, as a plain open() would (mkstemp: 0o600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())  # otherwise a crash after the rename can leave an empty file
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
