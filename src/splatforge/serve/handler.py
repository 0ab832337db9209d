"""The one job both the HTTP service and the RunPod worker run: an image in, a scene file out.

`predict_scene_file` takes a job's validated input, gets the image (base64 or a vetted URL),
checks it (strict base64, a real image, not truncated, within pixel limits), runs
`splatforge.predict.predict_image` and writes the scene file. `scene_output` turns the file into
the output dict of the SHARP RunPod worker::

    {"status": "success", "ply": <base64>, "num_gaussians": 1179648,
     "image_size": {"width": 1536, "height": 1024}, "focal_length_px": 1380.2}
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from PIL import Image, UnidentifiedImageError

from splatforge.errors import SplatforgeError
from splatforge.serve.fetch import fetch_url
from splatforge.serve.schemas import SceneJobInput
from splatforge.serve.settings import ImageLimits, UrlPolicy

Progress = Callable[[str], None]

SCENE_SUFFIX = {"ply": ".ply", "splat": ".splat", "spz": ".spz", "sog": ".sog"}


@dataclass
class SceneFile:
    """A written scene and the figures the output reports."""

    path: Path
    format: str
    num_gaussians: int
    width: int
    height: int
    focal_length_px: float


def decode_base64_image(text: str, limits: ImageLimits) -> bytes:
    """Strict standard base64 (no stray characters, correct padding), optionally after a
    `data:image/...;base64,` prefix. Raises SplatforgeError."""
    if text.startswith("data:"):
        header, sep, text = text.partition(",")
        if not sep or not header.endswith(";base64"):
            raise SplatforgeError("input.image: a data: URL must be of the form data:image/...;base64,<data>")
    if len(text) > (limits.max_bytes * 4) // 3 + 4:
        raise SplatforgeError(f"input.image: the image is over the limit of {limits.max_bytes:,} bytes")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise SplatforgeError(f"input.image is not valid base64 ({err}); send the file's bytes in standard "
                              "base64 without line breaks") from None
    if not data:
        raise SplatforgeError("input.image is empty")
    return data


def check_image_header(data: bytes, limits: ImageLimits, source: str = "input image") -> tuple[int, int]:
    """Width and height from the image header, refusing non-images, decompression bombs and images
    too small for the network, without decoding the pixels. Raises SplatforgeError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
    except Image.DecompressionBombError:
        raise SplatforgeError(f"{source} has more pixels than Pillow accepts; the limit is "
                              f"{limits.max_pixels:,} pixels (decompression bomb guard)") from None
    except UnidentifiedImageError:
        raise SplatforgeError(f"{source} is not an image (PNG, JPEG, WebP, ... expected)") from None
    except Exception as err:  # noqa: BLE001 - corrupt headers raise anything
        raise SplatforgeError(f"{source} has a corrupt image header: {err}") from None
    _check_size(width, height, limits, source)
    return width, height


def _check_size(width: int, height: int, limits: ImageLimits, source: str) -> None:
    if width * height > limits.max_pixels:
        raise SplatforgeError(f"{source} is {width}x{height} = {width * height:,} pixels, over the limit of "
                              f"{limits.max_pixels:,} (decompression bomb guard)")
    if min(width, height) < limits.min_side:
        raise SplatforgeError(f"{source} is {width}x{height} pixels; both sides must be at least "
                              f"{limits.min_side} pixels")


def image_bytes_of(job: SceneJobInput, limits: ImageLimits, url_policy: UrlPolicy) -> bytes:
    """The encoded image a job names: decoded from base64 or fetched under `url_policy`."""
    if job.image is not None:
        return decode_base64_image(job.image, limits)
    policy = url_policy
    if policy.max_bytes > limits.max_bytes:
        policy = UrlPolicy(**{**policy.__dict__, "max_bytes": limits.max_bytes})
    return fetch_url(job.image_url, policy)


def scene_formats() -> tuple[str, ...]:
    """Output formats the service writes."""
    return tuple(SCENE_SUFFIX)


def check_output_format(fmt: str) -> None:
    if fmt not in scene_formats():
        raise SplatforgeError(f"input.output_format {fmt!r} is not available in this installation "
                              f"(available: {', '.join(scene_formats())})")


def predict_scene_file(job: SceneJobInput, predictor, out_dir: Path, *, limits: ImageLimits,
                       url_policy: UrlPolicy, progress: Optional[Progress] = None) -> SceneFile:
    """Run one job: get and check the image, predict Gaussians, write `out_dir/scene.<format>`.

    Raises SplatforgeError for anything the job's sender can fix; other exceptions are bugs or
    resource failures."""
    from splatforge.predict import predict_image, save_ply

    report = progress or (lambda stage: None)
    check_output_format(job.output_format)
    report("fetching image" if job.image_url else "decoding image")
    data = image_bytes_of(job, limits, url_policy)
    check_image_header(data, limits)
    report("predicting")
    # predict_image decodes the whole image (EXIF orientation and focal length included) and
    # refuses truncated or corrupt data and images over max_pixels.
    prediction = predict_image(data, predictor, focal_length_px=job.focal_length_px, max_pixels=limits.max_pixels)
    report("writing scene")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"scene{SCENE_SUFFIX[job.output_format]}"
    if job.output_format == "ply":
        save_ply(prediction, path)
    else:
        import splatforge.compress  # noqa: F401  (registers the SOG writer with save_scene)
        from splatforge.io.scene import save_scene

        save_scene(prediction.to_gaussians(), path, format=job.output_format)
    width, height = prediction.image_size
    return SceneFile(path=path, format=job.output_format, num_gaussians=int(prediction.num_gaussians),
                     width=int(width), height=int(height), focal_length_px=float(prediction.focal_length_px))


def scene_output(scene: SceneFile, *, inline_limit: Optional[int] = None, url: Optional[str] = None) -> dict:
    """The SHARP worker's output dict; the file is inlined as base64 unless it is larger than
    `inline_limit`, in which case `"<format>_url"` gives where to download it instead."""
    size = scene.path.stat().st_size
    output: dict = {"status": "success"}
    if inline_limit is not None and size > inline_limit and url:
        output[f"{scene.format}_url"] = url
    else:
        output[scene.format] = base64.b64encode(scene.path.read_bytes()).decode("ascii")
    output.update(num_gaussians=scene.num_gaussians,
                  image_size={"width": scene.width, "height": scene.height},
                  focal_length_px=scene.focal_length_px)
    return output
