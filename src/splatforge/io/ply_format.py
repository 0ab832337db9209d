"""PLY files in general: any element layout, as numpy structured arrays, read and written safely.

`read_ply_elements` / `write_ply_elements` handle ``binary_little_endian``, ``binary_big_endian``
and ``ascii`` (version 1.0) files as one 1-D structured array per element, in file order, with
native byte order. List properties (mesh faces) come back as object fields holding one 1-D array
per row. Reading never trusts the header: every declared size is checked against the bytes the
file holds before anything is allocated, and a malformed file raises `FormatError` naming the file
and the problem, never a partial result. Writes are atomic. `io.ply` builds the INRIA 3DGS layout
on top of this.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Mapping, NamedTuple, Sequence, Union

import numpy as np

from splatforge.core.fsutil import atomic_write
from splatforge.errors import FormatError, SplatforgeError

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
    atomic_write(path, ["\n".join(header).encode("utf-8"), *bodies])


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
