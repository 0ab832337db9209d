"""Truncated, corrupt and hostile files: every reader raises FormatError, never crashes or hangs."""

import gzip
import io
import json
import struct
import zipfile
from datetime import timedelta

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import splatforge.compress  # noqa: F401  (save_scene writes SOG through it)
from splatforge.core.gaussians import Gaussians
from splatforge.errors import FormatError, SplatforgeError
from splatforge.io.formats.compressed_ply import read_compressed_ply, write_compressed_ply
from splatforge.io.formats.sog import read_sog
from splatforge.io.formats.splat import read_splat
from splatforge.io.formats.spz import HEADER_V4, TOC_ENTRY, encode_spz, read_spz
from splatforge.io.scene import load_scene, save_scene

from .conftest import make_gaussians

# A hang or a runaway allocation shows as a case past the deadline; a normal case takes milliseconds,
# so the bound is loose enough for a loaded machine (hypothesis re-runs a slow case before failing).
FUZZ = settings(max_examples=25, deadline=timedelta(seconds=10),
                suppress_health_check=[HealthCheck.function_scoped_fixture])
# The most Gaussians a file of `size` bytes can hold, where the format bounds it: a .splat record is
# 32 bytes, a compressed-PLY vertex 16, an SPZ v3 Gaussian at least 19 bytes of a gzip stream (which
# inflates 1032x at most). SPZ v4 (zstd) and SOG (WebP) have no such bound.
MOST = {".splat": lambda size: size // 32, ".compressed.ply": lambda size: size // 16,
        ".spz": lambda size: size * 1032 // 19}


def _valid_bytes(tmp_path, ext):
    g = make_gaussians(40, sh_degree=1)
    if ext == ".v4.spz":
        return encode_spz(g, version=4)
    path = tmp_path / f"valid{ext}"
    save_scene(g, path, **({"palette_size": 16} if ext == ".sog" else {}))
    return path.read_bytes()


def _read_or_format_error(path, reader, ext, tmp_path):
    """A damaged file either raises FormatError or decodes to a valid scene: float32 CPU
    Gaussians with finite values, no more of them than the file's bytes can hold, that the same
    format writes and reads back unchanged in number."""
    try:
        g = reader(path)
    except FormatError:
        return
    assert isinstance(g, Gaussians) and g.dtype == torch.float32 and g.device.type == "cpu"
    for name, value in g.named_parameters():
        assert bool(torch.isfinite(value).all()), f"{name} holds NaN or inf"
    if ext in MOST:
        assert len(g) <= MOST[ext](path.stat().st_size)
    if ext == ".splat":
        assert len(g) * 32 == path.stat().st_size and g.sh_degree == 0
    again = tmp_path / f"again{'.sog' if ext == '.sog' else ext.replace('.v4', '')}"
    save_scene(g, again, **({"palette_size": 16, "plas_iterations": 1} if ext == ".sog" else {}))
    back = READERS[ext](again)
    assert len(back) == len(g) and back.sh_degree == g.sh_degree


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("valid")
    return {ext: _valid_bytes(d, ext) for ext in (".splat", ".spz", ".v4.spz", ".compressed.ply", ".sog")}


READERS = {".splat": read_splat, ".spz": read_spz, ".v4.spz": read_spz, ".compressed.ply": read_compressed_ply,
           ".sog": read_sog}


@pytest.mark.parametrize("ext", list(READERS))
@FUZZ
@given(data=st.binary(max_size=600))
def test_random_bytes(tmp_path, ext, data):
    path = tmp_path / f"r{ext}"
    path.write_bytes(data)
    _read_or_format_error(path, READERS[ext], ext, tmp_path)


@pytest.mark.parametrize("ext", list(READERS))
@FUZZ
@given(cut=st.floats(0.0, 0.999), flips=st.lists(st.tuples(st.floats(0, 0.999), st.integers(0, 7)), max_size=4))
def test_truncated_and_bit_flipped(tmp_path, valid_files, ext, cut, flips):
    data = bytearray(valid_files[ext])
    for where, bit in flips:
        data[int(where * len(data))] ^= 1 << bit
    path = tmp_path / f"t{ext}"
    path.write_bytes(bytes(data[: max(1, int(cut * len(data)))] if cut > 0 else data))
    _read_or_format_error(path, READERS[ext], ext, tmp_path)


@FUZZ
@given(records=st.lists(st.tuples(st.lists(st.floats(width=32), min_size=3, max_size=3),
                                  st.lists(st.floats(width=32) | st.floats(0, 100, width=32), min_size=3, max_size=3),
                                  st.binary(min_size=8, max_size=8)), max_size=4))
def test_splat_records_with_any_floats(tmp_path, records):
    """Every float32 a .splat record can hold, NaN, infinities and negative scales included."""
    path = tmp_path / "f.splat"
    path.write_bytes(b"".join(struct.pack("<6f", *position, *scale) + rest for position, scale, rest in records))
    _read_or_format_error(path, read_splat, ".splat", tmp_path)


def test_splat_size_not_multiple_of_32(tmp_path):
    (tmp_path / "a.splat").write_bytes(b"\0" * 33)
    with pytest.raises(FormatError, match="multiple of 32"):
        read_splat(tmp_path / "a.splat")


def test_spz_lying_count_is_rejected_before_allocation(tmp_path):
    header = struct.pack("<IIIBBBB", 0x5053474E, 3, 0xFFFFFFFF, 3, 12, 0, 0)
    (tmp_path / "a.spz").write_bytes(gzip.compress(header + b"\0" * 100))
    with pytest.raises(FormatError, match="declares"):
        read_spz(tmp_path / "a.spz")


def test_spz_gzip_bomb_is_not_inflated_past_the_declared_size(tmp_path):
    header = struct.pack("<IIIBBBB", 0x5053474E, 3, 10, 0, 12, 0, 0)
    bomb = gzip.compress(header + b"\0" * (200 << 20), compresslevel=9)  # 200 MB of zeros, ~200 KB
    (tmp_path / "b.spz").write_bytes(bomb)
    g = read_spz(tmp_path / "b.spz")  # reads its 10 Gaussians and ignores the rest
    assert len(g) == 10


def test_spz_garbage_gzip_and_bad_versions(tmp_path):
    (tmp_path / "c.spz").write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(FormatError):
        read_spz(tmp_path / "c.spz")
    for version, match in ((1, "version 1"), (4, "zstd"), (99, "version 99")):
        header = struct.pack("<IIIBBBB", 0x5053474E, version, 1, 0, 12, 0, 0)
        (tmp_path / "d.spz").write_bytes(gzip.compress(header + b"\0" * 64))
        with pytest.raises(FormatError, match=match):
            read_spz(tmp_path / "d.spz")


def _spz_v4(n, degree, streams, tocs=None, tail=b""):
    """An SPZ v4 container around the given (compressed) streams; `tocs` overrides the table."""
    header = HEADER_V4.pack(0x5053474E, 4, n, degree, 12, 0, len(streams), HEADER_V4.size)
    tocs = tocs or [(len(c), u) for c, u in streams]
    return header + b"".join(TOC_ENTRY.pack(c, u) for c, u in tocs) + b"".join(c for c, _ in streams) + tail


def _zstd(data):
    import zstandard

    return zstandard.ZstdCompressor(level=3).compress(data)


def test_spz_v4_round_trip_and_rejects_hostile_tables(tmp_path):
    n = 5
    sizes = [9 * n, n, 3 * n, 3 * n, 4 * n]
    good = [(_zstd(b"\x01" * u), u) for u in sizes]
    (tmp_path / "ok.spz").write_bytes(_spz_v4(n, 0, good))
    assert len(read_spz(tmp_path / "ok.spz")) == n
    huge = [(c, u) for c, u in good[:4]] + [(good[4][0], 1 << 40)]
    cases = [
        (_spz_v4(0xFFFFFFFF, 0, good), "declares"),  # lying count: tables disagree
        (_spz_v4(n, 0, good, tocs=[(len(c), u) for c, u in huge]), "declares"),  # lying sizes
        (_spz_v4(n, 0, good, tocs=[(1 << 60, u) for _, u in good]), "past the end"),
        (_spz_v4(n, 0, good, tail=b"junk"), "follow the last"),
        (_spz_v4(n, 0, good[:3]), "streams"),
        (_spz_v4(n, 7, good), "SH degree"),
        (_spz_v4(n, 0, [(b"\x28\xb5\x2f\xfd" + b"garbage!" * 3, u) for _, u in good]), "zstd|decompresses"),
        (_spz_v4(n, 0, [(_zstd(b"\x01" * (u - 1)), u) for _, u in good]), "decompresses to"),
        (_spz_v4(n, 0, good)[:40], "table of contents"),
        (_spz_v4(n, 0, good)[:20], "too short"),
    ]
    for data, match in cases:
        (tmp_path / "bad.spz").write_bytes(data)
        with pytest.raises(FormatError, match=match):
            read_spz(tmp_path / "bad.spz")


def test_spz_v4_zstd_bomb_is_not_decompressed_past_the_declared_size(tmp_path):
    n = 10
    bomb = _zstd(b"\0" * (64 << 20))  # 64 MB of zeros in a few KB, declared as 90 bytes
    streams = [(bomb, 9 * n)] + [(_zstd(b"\0" * u), u) for u in (n, 3 * n, 3 * n, 4 * n)]
    (tmp_path / "bomb.spz").write_bytes(_spz_v4(n, 0, streams))
    with pytest.raises(FormatError, match="more than that"):
        read_spz(tmp_path / "bomb.spz")


def test_compressed_ply_wrong_chunk_count(tmp_path):
    write_compressed_ply(tmp_path / "a.ply", make_gaussians(300, 0))
    data = (tmp_path / "a.ply").read_bytes().replace(b"element vertex 300", b"element vertex 600")
    (tmp_path / "b.ply").write_bytes(data)
    with pytest.raises(FormatError):
        read_compressed_ply(tmp_path / "b.ply")


def _sog_zip(tmp_path, meta, files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("meta.json", json.dumps(meta))
        for name, data in files.items():
            zf.writestr(name, data)
    path = tmp_path / "h.sog"
    path.write_bytes(buf.getvalue())
    return path


def test_sog_hostile_meta(tmp_path, valid_files):
    with zipfile.ZipFile(io.BytesIO(valid_files[".sog"])) as zf:
        meta = json.loads(zf.read("meta.json"))
        files = {n: zf.read(n) for n in zf.namelist() if n != "meta.json"}
    for change, match in [
        ({"count": 10**12}, "count"),
        ({"version": 1}, "version"),
        ({"means": {"mins": [0, 0], "maxs": [1, 1, 1], "files": meta["means"]["files"]}}, "means.mins"),
        ({"scales": {"codebook": [float("nan")] * 256, "files": ["scales.webp"]}}, "scales.codebook"),
        ({"quats": {"files": ["../../etc/passwd"]}}, "plain names"),
        ({"count": 100000}, "texels"),
    ]:
        with pytest.raises(FormatError, match=match):
            read_sog(_sog_zip(tmp_path, {**meta, **change}, files))


def test_sog_zip_bomb_entry_is_cut_off(tmp_path, valid_files):
    with zipfile.ZipFile(io.BytesIO(valid_files[".sog"])) as zf:
        meta = json.loads(zf.read("meta.json"))
        files = {n: zf.read(n) for n in zf.namelist() if n != "meta.json"}
    files["quats.webp"] = b"\0" * (50 << 20)  # deflates to ~50 KB, inflates far past any 40-texel image
    with pytest.raises(FormatError, match="zip bomb"):
        read_sog(_sog_zip(tmp_path, meta, files))


def test_load_scene_unknown_and_missing(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"hello world")
    with pytest.raises(FormatError, match="unrecognized"):
        load_scene(tmp_path / "x.bin")
    with pytest.raises(SplatforgeError, match="no such"):
        load_scene(tmp_path / "missing.ply")
    with pytest.raises(SplatforgeError):
        save_scene(make_gaussians(3, 0), tmp_path / "x.unknown")


def _newer_sog(tmp_path, version):
    g = make_gaussians(40, sh_degree=1)
    path = tmp_path / "valid.sog"
    save_scene(g, path, palette_size=16)
    with zipfile.ZipFile(path) as zf:
        meta = json.loads(zf.read("meta.json"))
        files = {n: zf.read(n) for n in zf.namelist() if n != "meta.json"}
    path.unlink()
    return _sog_zip(tmp_path, {**meta, "version": version}, files)


def _newer_spz(tmp_path, version, gzipped):
    data = bytearray(encode_spz(make_gaussians(40, sh_degree=1), version=3 if gzipped else 4))
    if gzipped:
        raw = bytearray(gzip.decompress(bytes(data)))
        raw[4:8] = struct.pack("<I", version)
        data = gzip.compress(bytes(raw))
    else:
        data[4:8] = struct.pack("<I", version)
    path = tmp_path / "newer.spz"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("kind", ["sog 3", "sog 17", "spz 5 gzip", "spz 5 zstd", "spz 4096 zstd"])
@pytest.mark.parametrize("command", ["convert", "compress"])
def test_newer_version_names_found_and_supported_versions_and_writes_nothing(tmp_path, capsys, kind, command):
    from splatforge.cli import main

    fmt, version, *how = kind.split()
    src = _newer_sog(tmp_path, int(version)) if fmt == "sog" else _newer_spz(tmp_path, int(version), how == ["gzip"])
    supported = "SOG version 2" if fmt == "sog" else "SPZ versions 2-4"
    with pytest.raises(FormatError, match=f"{fmt.upper()} version {version} is newer than splatforge reads"):
        load_scene(src)
    out = tmp_path / ("out.sog" if command == "compress" else "out.ply")
    args = [command, str(src), str(out)] if command == "convert" else [command, str(src), "-o", str(out)]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{fmt.upper()} version {version} is newer" in err and supported in err and str(src) in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no temporary file
