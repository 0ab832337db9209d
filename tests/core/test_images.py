"""Image loading: every pixel mode to float RGB, EXIF orientation, corrupt input, size limits."""

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from splatforge.core.images import load_image, load_image_bytes, save_image, to_uint8
from splatforge.errors import SplatforgeError


def noise(h=48, w=64, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_bilevel_png(width: int, height: int, with_pixels: bool) -> bytes:
    """A valid 1-bit PNG of any size; all-black rows compress ~1000:1, so 20000x20000 is ~50 KB."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
    body = b""
    if with_pixels:
        compressor = zlib.compressobj(9)
        row = bytes(1 + (width + 7) // 8)  # filter byte + packed bits
        body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
        body = png_chunk(b"IDAT", body)
    return b"\x89PNG\r\n\x1a\n" + header + body + png_chunk(b"IEND", b"")


def mode_cases():
    """(mode, format, image, pixel (0, 0) expected as float RGB)."""
    rgb = Image.fromarray(noise(4, 6))
    yield "RGB", "PNG", rgb, np.asarray(rgb)[0, 0] / 255.0
    yield "L", "PNG", Image.new("L", (6, 4), 128), [128 / 255.0] * 3
    yield "1", "PNG", Image.new("1", (6, 4), 1), [1.0] * 3
    palette = Image.new("P", (6, 4), 2)
    palette.putpalette([0, 0, 0, 255, 255, 255, 10, 200, 30] + [0] * 759)
    yield "P", "PNG", palette, np.array([10, 200, 30]) / 255.0
    transparent = palette.copy()
    transparent.info["transparency"] = 2
    yield "P", "PNG-transparency", transparent, np.array([10, 200, 30]) / 255.0
    # Alpha is dropped, not composited: a fully transparent pixel keeps its colour.
    yield "RGBA", "PNG", Image.new("RGBA", (6, 4), (10, 20, 30, 0)), np.array([10, 20, 30]) / 255.0
    yield "LA", "PNG", Image.new("LA", (6, 4), (100, 0)), [100 / 255.0] * 3
    yield "I;16", "PNG", Image.new("I;16", (6, 4), 32768), [32768 / 65535.0] * 3
    yield "I;16B", "TIFF", Image.new("I;16B", (6, 4), 65535), [1.0] * 3
    yield "I", "TIFF", Image.new("I", (6, 4), 13107), [0.2] * 3
    yield "I", "TIFF-negative", Image.new("I", (6, 4), -5), [0.0] * 3
    yield "F", "TIFF", Image.new("F", (6, 4), 0.25), [0.25] * 3
    yield "F", "TIFF-over", Image.new("F", (6, 4), 7.0), [1.0] * 3
    yield "CMYK", "TIFF", Image.new("CMYK", (6, 4), (255, 0, 0, 0)), [0.0, 1.0, 1.0]
    yield "CMYK", "JPEG", Image.new("CMYK", (6, 4), (0, 0, 0, 0)), [1.0, 1.0, 1.0]


MODE_CASES = list(mode_cases())


@pytest.mark.parametrize("mode,fmt,image,expected", MODE_CASES, ids=[f"{m}-{f}" for m, f, _, _ in MODE_CASES])
def test_every_mode_converts_to_float_rgb(tmp_path, mode, fmt, image, expected):
    path = tmp_path / f"image.{fmt.split('-')[0].lower()}"
    image.save(path, format=fmt.split("-")[0])
    assert Image.open(path).mode == mode  # the file really holds this mode
    out = load_image(path)
    assert out.shape == (4, 6, 3) and out.dtype == np.float32
    assert out.flags["C_CONTIGUOUS"]
    assert 0.0 <= out.min() and out.max() <= 1.0
    tolerance = 3 / 255 if fmt == "JPEG" else 1e-6
    np.testing.assert_allclose(out[0, 0], expected, atol=tolerance)
    np.testing.assert_allclose(load_image_bytes(path.read_bytes()), out)


def test_rgb_png_is_exact(tmp_path):
    pixels = noise()
    save_image(tmp_path / "a.png", pixels)
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), pixels / np.float32(255))


def test_exif_orientation_is_applied(tmp_path):
    # Stored 40 wide x 20 tall, left half red, right half blue. Orientation 6 means "rotate 90
    # degrees clockwise to display": the result is 20 wide x 40 tall, red on top.
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20, 0] = 255
    pixels[:, 20:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "portrait.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    out = load_image(path)
    assert out.shape == (40, 20, 3)
    assert out[5, 10, 0] > 0.9 and out[5, 10, 2] < 0.1  # top: red
    assert out[35, 10, 2] > 0.9 and out[35, 10, 0] < 0.1  # bottom: blue


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_images_raise(tmp_path, fmt):
    data = encode(Image.fromarray(noise(128, 128)), fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SplatforgeError, match="truncated or corrupt") as info:
        load_image(path)
    assert str(path) in str(info.value)
    with pytest.raises(SplatforgeError, match="truncated or corrupt"):
        load_image_bytes(data[: len(data) // 2])


def test_pixel_limit_is_checked_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(huge_bilevel_png(20000, 20000, with_pixels=True))
    assert path.stat().st_size < 200_000
    with pytest.raises(SplatforgeError, match=r"over the limit of 134,217,728 pixels.*max_pixels=") as info:
        load_image(path)
    assert str(path) in str(info.value)
    # A limit above Pillow's own is honoured too: the size is read, and still too large.
    with pytest.raises(SplatforgeError, match=r"20000x20000 = 400,000,000 pixels, over the limit of 300,000"):
        load_image(path, max_pixels=300_000_000)
    # With no pixel data at all, decoding would fail as truncated: the limit error comes first.
    with pytest.raises(SplatforgeError, match="over the limit"):
        load_image_bytes(huge_bilevel_png(20000, 20000, with_pixels=False))
    with pytest.raises(SplatforgeError, match=r"over the limit of 1,000 pixels"):
        load_image_bytes(huge_bilevel_png(50, 50, with_pixels=True), max_pixels=1000)
    assert load_image_bytes(huge_bilevel_png(50, 50, with_pixels=True), max_pixels=2500).shape == (50, 50, 3)


@pytest.mark.parametrize("pillow_limit", [10, 40])  # 64 pixels: over Pillow's error, over its warning
def test_pillows_own_limit_is_replaced(monkeypatch, pillow_limit):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillow_limit)
    data = encode(Image.fromarray(noise(8, 8)), "PNG")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image_bytes(data).shape == (8, 8, 3)
    assert Image.MAX_IMAGE_PIXELS == pillow_limit  # restored


def test_bad_inputs_raise_with_the_path(tmp_path):
    with pytest.raises(SplatforgeError, match="image not found") as info:
        load_image(tmp_path / "missing.png")
    assert "missing.png" in str(info.value)
    with pytest.raises(SplatforgeError, match="is a directory"):
        load_image(tmp_path)
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    with pytest.raises(SplatforgeError, match="not an image Pillow can read") as info:
        load_image(text)
    assert str(text) in str(info.value)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(SplatforgeError, match="empty"):
        load_image(empty)
    with pytest.raises(SplatforgeError, match="not an image Pillow can read"):
        load_image_bytes(b"\x00\x01garbage" * 10, name="upload.jpg")
    with pytest.raises(SplatforgeError, match="upload.jpg"):
        load_image_bytes(b"\x00\x01garbage" * 10, name="upload.jpg")


def test_zero_sized_image_raises():
    # Pillow itself refuses zero-sized headers of the formats it writes; either way the user
    # gets our error with the source named.
    with pytest.raises(SplatforgeError, match="empty.png"):
        load_image_bytes(huge_bilevel_png(0, 10, with_pixels=False), name="empty.png")


def test_save_image(tmp_path):
    floats = np.linspace(-0.5, 1.5, 5 * 4 * 3, dtype=np.float32).reshape(5, 4, 3)
    path = save_image(tmp_path / "deep" / "dir" / "out.png", floats)
    assert path.exists()
    np.testing.assert_array_equal(np.asarray(Image.open(path)), to_uint8(floats))
    assert to_uint8(floats).min() == 0 and to_uint8(floats).max() == 255

    gray = np.full((6, 7), 0.5)
    save_image(tmp_path / "gray.png", gray)
    out = load_image(tmp_path / "gray.png")
    assert out.shape == (6, 7, 3) and np.allclose(out, 128 / 255)

    save_image(tmp_path / "t.jpg", torch.rand(16, 16, 3))
    assert Image.open(tmp_path / "t.jpg").format == "JPEG"
    save_image(tmp_path / "one.png", np.zeros((3, 3, 1), np.uint8))
    with pytest.raises(SplatforgeError, match="extension"):
        save_image(tmp_path / "out.xyz", floats)
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        save_image(tmp_path / "bad.png", np.zeros((4, 4, 2)))


def test_to_uint8():
    assert to_uint8(np.array([0.0, 0.5, 1.0, 2.0, -1.0, np.nan])).tolist() == [0, 128, 255, 255, 0, 0]
    u = np.array([1, 2, 3], np.uint8)
    assert to_uint8(u) is u
    with pytest.raises(ValueError, match="float in"):
        to_uint8(np.array([1, 2], np.int32))
