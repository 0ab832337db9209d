"""Image loading and saving: float32 RGB in [0, 1], HxWx3, upright, with a size limit.

Every user-caused failure (missing file, not an image, truncated or corrupt data, too many
pixels) raises `SplatforgeError` with the path in the message. Pixel values are returned as
stored (sRGB for ordinary photos); no colour management is applied.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from splatforge.core.limits import DEFAULT_MAX_PIXELS
from splatforge.errors import SplatforgeError

# Pillow's own bomb check reads the global Image.MAX_IMAGE_PIXELS. It is lifted only when Pillow
# refuses a header that a caller's raised `max_pixels` allows, under this lock, and only while
# the header is read; threads opening images in that instant skip Pillow's check too.
_PILLOW_LIMIT_LOCK = threading.Lock()

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def load_image(
    path: str | os.PathLike,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> np.ndarray:  # [H, W, 3] float32
    """Read an image file as float32 RGB in [0, 1], shape [H, W, 3], H and W in pixels.

    - EXIF orientation is applied, so a portrait photo comes back portrait (H > W).
    - Grayscale, palette, CMYK, YCbCr, LAB and HSV images are converted to RGB. An alpha channel
      (RGBA, LA, PA) is dropped, not composited: colour values are returned as stored.
    - 16-bit grayscale ("I;16") is scaled by 1/65535; 32-bit integer ("I") likewise, clipped to
      [0, 1]; float ("F") is taken as already in [0, 1] and clipped. Multi-frame files give the
      first frame.
    - The pixel count from the header is checked against `max_pixels` before anything is
      decoded (None: no limit). This replaces Pillow's decompression-bomb warning and error.

    Raises:
        SplatforgeError: missing path, a directory, unreadable or not an image, truncated or
            corrupt data, zero width or height, more than `max_pixels` pixels.
    """
    path = Path(path)
    if not path.exists():
        raise SplatforgeError(f"image not found: {path}")
    if path.is_dir():
        raise SplatforgeError(f"{path} is a directory, not an image file")
    try:
        # Opened lazily: only the header is read before the pixel limit is checked.
        with open(path, "rb") as file:
            return _decode(file, str(path), max_pixels)
    except OSError as err:  # permission denied, I/O error; Pillow's decode errors are already wrapped
        raise SplatforgeError(f"cannot read image {path}: {err.strerror or err}") from err


def load_image_bytes(
    data: bytes,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    name: str = "<bytes>",
) -> np.ndarray:  # [H, W, 3] float32
    """`load_image` for an encoded image in memory (an upload, an HTTP body); `name` appears in
    error messages in place of a path."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    return _decode(io.BytesIO(data), name, max_pixels)


def _decode(file: BinaryIO, source: str, max_pixels: int | None) -> np.ndarray:
    if max_pixels is not None and not max_pixels > 0:
        raise ValueError(f"max_pixels must be > 0 or None, got {max_pixels}")
    if not file.read(1):
        raise SplatforgeError(f"{source} is empty (0 bytes), not an image")
    with _open_header(file, source, max_pixels) as im:
        width, height = im.size
        if width <= 0 or height <= 0:
            raise SplatforgeError(f"{source} has a zero-sized image ({width}x{height} pixels)")
        if max_pixels is not None and width * height > max_pixels:
            raise _too_many_pixels(source, f"{width}x{height} = {width * height:,} pixels", max_pixels)
        if ImageFile.LOAD_TRUNCATED_IMAGES:
            # Another library switched truncated images to "fill with grey"; we cannot detect
            # truncation then, so say so rather than silently return a partly grey image.
            warnings.warn(
                "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True in this process; truncated images "
                "will load with missing pixels instead of raising",
                stacklevel=3,
            )
        # Pillow raises many exception types for corrupt data (OSError, SyntaxError, ValueError,
        # struct.error, zlib errors, ...), and all of them mean the same thing here.
        try:
            im.load()
            upright = ImageOps.exif_transpose(im)
            return _to_rgb_float(upright, source)
        except (SplatforgeError, MemoryError):
            raise
        except Exception as err:  # noqa: BLE001
            raise SplatforgeError(f"{source} is truncated or corrupt and cannot be decoded: {err}") from err


def _too_many_pixels(source: str, size: str, max_pixels: int) -> SplatforgeError:
    return SplatforgeError(
        f"{source} is {size}, over the limit of {max_pixels:,} pixels that guards against "
        "decompression bombs; if the image is trusted, raise the limit with max_pixels= "
        "(None disables it), or --max-pixels on the command line"
    )


def _open_header(file: BinaryIO, source: str, max_pixels: int | None) -> Image.Image:
    """Image.open (reads the header only) with Pillow's decompression-bomb check replaced by
    our `max_pixels` check, which the caller makes on the returned image's size."""
    def open_() -> Image.Image:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(file)  # seeks to the start itself

    try:
        try:
            return open_()
        except Image.DecompressionBombError:
            pillow_limit = Image.MAX_IMAGE_PIXELS
            if max_pixels is not None and pillow_limit is not None and max_pixels <= 2 * pillow_limit:
                # Pillow refuses only above 2x its limit, so this image is over ours as well.
                raise _too_many_pixels(source, f"more than {2 * pillow_limit:,} pixels", max_pixels) from None
            with _PILLOW_LIMIT_LOCK:
                saved = Image.MAX_IMAGE_PIXELS
                Image.MAX_IMAGE_PIXELS = None
                try:
                    return open_()
                finally:
                    Image.MAX_IMAGE_PIXELS = saved
    except SplatforgeError:
        raise
    except UnidentifiedImageError as err:
        raise SplatforgeError(
            f"{source} is not an image Pillow can read (unknown format, or a corrupt header)"
        ) from err
    except Exception as err:  # noqa: BLE001 - corrupt headers raise anything, struct.error to ValueError
        raise SplatforgeError(f"{source} has a corrupt image header: {err}") from err


def _to_rgb_float(im: Image.Image, source: str) -> np.ndarray:  # -> [H, W, 3] float32
    mode = im.mode
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        # Pillow's convert("RGB") clips these to 8 bits instead of scaling, so scale here.
        gray = np.asarray(im).astype(np.float32)
        if mode != "F":
            gray /= 65535.0
        gray = np.clip(np.nan_to_num(gray, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode != "RGB":
        if mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")  # palette transparency converts only through RGBA
        try:
            im = im.convert("RGB")  # drops alpha; converts L, 1, CMYK, YCbCr, LAB, HSV, LA, ...
        except ValueError as err:
            raise SplatforgeError(f"{source} has pixel mode {mode!r}, which has no RGB conversion") from err
    return np.asarray(im, dtype=np.float32) / np.float32(255.0)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """8-bit copy of an image: floats are clipped to [0, 1] and rounded (NaN becomes 0); uint8
    is returned unchanged. Torch tensors are accepted."""
    array = _as_numpy(image)
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"image must be float in [0, 1] or uint8, got {array.dtype}")
    array = np.nan_to_num(array, nan=0.0, posinf=1.0, neginf=0.0)
    return (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_image(
    path: str | os.PathLike,
    image: np.ndarray,  # [H, W, 3], [H, W, 1] or [H, W]
    quality: int = 95,
) -> Path:
    """Write an image, format from the extension (.png, .jpg/.jpeg, or any other Pillow writes).

    Args:
        path: destination; missing parent directories are created.
        image: float in [0, 1] (clipped) or uint8; RGB [H, W, 3], grayscale [H, W] or [H, W, 1].
            Torch tensors are accepted (in HWC order, like everything else here).
        quality: JPEG/WebP quality, 1-100 (ignored by lossless formats).

    Returns:
        The path written.
    """
    path = Path(path)
    array = to_uint8(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"image must be [H, W, 3], [H, W, 1] or [H, W], got {array.shape}")
    suffix = path.suffix.lower()
    if suffix not in Image.registered_extensions():
        Image.init()  # load every plugin before deciding the extension is unknown
    format_ = Image.registered_extensions().get(suffix)
    if format_ is None:
        raise SplatforgeError(f"cannot tell the image format of {path} from its extension; use .png or .jpg")
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"quality": int(quality)} if format_ in ("JPEG", "WEBP") else {}
    try:
        Image.fromarray(array).save(path, format=format_, **kwargs)
    except OSError as err:
        raise SplatforgeError(f"cannot write image {path}: {err}") from err
    return path


def _as_numpy(image) -> np.ndarray:
    if hasattr(image, "detach"):  # a torch tensor; images.py does not import torch for this
        image = image.detach().cpu().numpy()
    return np.asarray(image)
