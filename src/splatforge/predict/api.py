"""One photo -> 3D Gaussians: `build_predictor`, `predict_image`, `Prediction`.

    from splatforge.predict import build_predictor, predict_image, save_ply
    predictor = build_predictor()                 # official weights (downloaded once)
    prediction = predict_image("photo.jpg", predictor)
    save_ply(prediction, "photo.ply")             # ml-sharp's PLY layout
    gaussians = prediction.to_gaussians()         # splatforge Gaussians for rendering

The pipeline is ml-sharp's: the image (EXIF-rotated, RGB in [0, 1]) is resized bilinearly
(align_corners=True) to the network's square input, the network predicts Gaussians in normalized
camera space with disparity factor f_px / width, and those are unprojected to metric OpenCV
camera coordinates (x right, y down, z forward; the camera is the world origin).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from splatforge.core.gaussians import Gaussians
from splatforge.core.images import DEFAULT_MAX_PIXELS, load_image, load_image_bytes
from splatforge.core.sh import C0
from splatforge.errors import SplatforgeError

from .checkpoint import (
    download_official_checkpoint,
    load_weights,
    print_licence_notice,
    read_state_dict,
)
from .focal import exif_tags, focal_length_35mm, focal_mm_to_px
from .sharp import RGBGaussianPredictor, SharpGaussians, create_predictor, linear_to_srgb
from .sharp.presets import PRESETS, preset_params, randomize_weights
from .unproject import transform_gaussians_cpu, unprojection_matrix

ImageInput = Union[str, os.PathLike, bytes, bytearray, Image.Image, np.ndarray]

try:  # HEIC/HEIF photos (iPhones) open through Pillow once the plugin is registered
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # optional
    pass


@dataclass(eq=False)
class Prediction:
    """Gaussians predicted from one image, metric, in the camera's OpenCV frame.

    Activated values (not log/logit): `scales` are standard deviations, largest first;
    `colors` are in `color_space` ("linearRGB" for SHARP).
    """

    means: torch.Tensor  # [N, 3]
    scales: torch.Tensor  # [N, 3]
    quats: torch.Tensor  # [N, 4] (w, x, y, z), unit, w >= 0
    colors: torch.Tensor  # [N, 3]
    opacities: torch.Tensor  # [N]
    focal_length_px: float  # of the input image, in its pixels
    image_size: tuple[int, int]  # (width, height) of the input image
    color_space: str = "linearRGB"

    @property
    def num_gaussians(self) -> int:
        return int(self.means.shape[0])

    def intrinsics(self) -> torch.Tensor:  # [3, 3]
        width, height = self.image_size
        f = self.focal_length_px
        return torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=torch.float32)

    def srgb_colors(self) -> torch.Tensor:  # [N, 3]
        return linear_to_srgb(self.colors) if self.color_space == "linearRGB" else self.colors

    def to_gaussians(self) -> Gaussians:
        """splatforge `Gaussians` (pre-activation, SH degree 0) with sRGB colours, as in the PLY:
        viewers and `rasterization()` blend sRGB values directly."""
        opacities = self.opacities.clamp(1e-6, 1 - 1e-6)
        return Gaussians(
            means=self.means.float(),
            scales=torch.log(self.scales.float()),
            quats=self.quats.float(),
            opacities=torch.log(opacities / (1 - opacities)).float(),
            sh0=((self.srgb_colors() - 0.5) / C0).float()[:, None, :],
            shN=torch.zeros(self.num_gaussians, 0, 3),
        )


def build_predictor(preset: str = "default", *, checkpoint: str | os.PathLike | None = None,
                    seed: int | None = None, device: str | torch.device = "cpu"
                    ) -> RGBGaussianPredictor:
    """The SHARP network in eval mode.

    Args:
        preset: "default" (the official network) or "small" (a few-MB model for tests).
        checkpoint: a state dict file (torch.save). Without one: `seed` gives seeded random
            weights; for "default" with neither, the official checkpoint is downloaded into the
            torch hub cache (once) and its research-only licence notice printed.
        seed: random weights from this seed (ignored when a checkpoint is given).
        device: "cpu", "cuda" or "mps".
    """
    try:
        params = preset_params(preset)
    except ValueError as err:
        raise SplatforgeError(str(err)) from err
    if checkpoint is None and seed is None and preset != "default":
        raise SplatforgeError(f"preset {preset!r} has no released weights: pass a checkpoint "
                              "or a seed for random weights")
    if checkpoint is None and seed is not None:
        model = create_predictor(params)
        randomize_weights(model, seed)
    else:
        if preset == "default":
            print_licence_notice()
        path = checkpoint if checkpoint is not None else download_official_checkpoint()
        state = read_state_dict(path)
        # Built without memory (meta tensors); the checkpoint's tensors become the parameters,
        # which skips initializing 700M weights only to overwrite them.
        with torch.device("meta"):
            model = create_predictor(params)
        load_weights(model, state, str(path), assign=True)
    try:
        model = model.to(device)
    except (RuntimeError, AssertionError) as err:
        raise SplatforgeError(f"cannot use device {device!r}: {err}") from err
    return model.eval()


def load_photo(image: ImageInput, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               ) -> tuple[np.ndarray, dict[str, Any]]:
    """(RGB float32 [H, W, 3] in [0, 1], upright; EXIF tags) from any accepted image input."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise SplatforgeError(f"an image array must be H x W x 3 uint8, got {image.dtype} "
                                  f"{image.shape}")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise SplatforgeError(f"the image array is empty ({image.shape})")
        _check_pixels(image.shape[1], image.shape[0], "the image array", max_pixels)
        return image.astype(np.float32) / np.float32(255.0), {}
    if isinstance(image, Image.Image):
        _check_pixels(image.width, image.height, "the PIL image", max_pixels)
        tags = exif_tags(image)
        buffer = io.BytesIO()
        # Through an encoded copy, so PIL images get load_image's mode handling (16-bit,
        # CMYK, palettes, alpha) too; TIFF keeps the modes PNG cannot store.
        lossless = "PNG" if image.mode in ("RGB", "RGBA", "L", "LA", "P", "1", "I;16") else "TIFF"
        try:
            ImageOps.exif_transpose(image).save(buffer, format=lossless)
        except Exception as err:  # noqa: BLE001 - a lazily loaded, corrupt PIL image
            raise SplatforgeError(f"the PIL image cannot be decoded: {err}") from err
        return load_image_bytes(buffer.getvalue(), max_pixels, name="the PIL image"), tags
    if isinstance(image, (bytes, bytearray, memoryview)):
        rgb = load_image_bytes(bytes(image), max_pixels, name="the uploaded image")
        return rgb, _tags_of(io.BytesIO(bytes(image)))
    if isinstance(image, (str, os.PathLike)):
        rgb = load_image(image, max_pixels)
        return rgb, _tags_of(Path(image))
    raise TypeError(f"image must be a path, bytes, a PIL image or an HxWx3 uint8 array, "
                    f"got {type(image).__name__}")


def _check_pixels(width: int, height: int, source: str, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise SplatforgeError(f"{source} is {width}x{height} = {width * height:,} pixels, over "
                              f"the limit of {max_pixels:,}")


def _tags_of(source: Any) -> dict[str, Any]:
    try:
        with Image.open(source) as im:  # header only
            return exif_tags(im)
    except Exception:  # noqa: BLE001 - the pixels already decoded; EXIF is optional
        return {}


def network_input(rgb: np.ndarray, size: int) -> torch.Tensor:
    """[H, W, 3] in [0, 1] -> [1, 3, size, size], resized as ml-sharp does."""
    image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()
    return F.interpolate(image, size=(size, size), mode="bilinear", align_corners=True)


def unproject(raw: SharpGaussians, focal_length_px: float, image_size: tuple[int, int],
              internal_size: int, color_space: str = "linearRGB") -> Prediction:
    """Network output (batch of one) -> metric `Prediction` (see `unproject.py`)."""
    linear = unprojection_matrix(focal_length_px, image_size, internal_size)
    means, quats, scales = transform_gaussians_cpu(
        raw.mean_vectors[0].cpu(), raw.quaternions[0].cpu(), raw.singular_values[0].cpu(),
        linear, torch.zeros(3, dtype=torch.float64))
    return Prediction(means, scales, quats, raw.colors[0].cpu(), raw.opacities[0].cpu(),
                      float(focal_length_px), tuple(image_size), color_space)


@torch.no_grad()
def predict_image(image: ImageInput, predictor: Any, *, focal_length_px: float | None = None,
                  backend: str = "torch",
                  max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Prediction:
    """Predict 3D Gaussians from one photo.

    Args:
        image: a path, encoded bytes, a PIL image or an H x W x 3 uint8 array.
        predictor: from `build_predictor` (backend "torch"), or for backend "onnx" an
            `OnnxPredictor` (`splatforge.predict.onnx.load_onnx_predictor`) or an .onnx path.
        focal_length_px: the focal length in pixels of `image`; by default from EXIF by
            ml-sharp's rule (35 mm equivalent, x8.4 below 10 mm, 30 mm if absent).
        backend: "torch" or "onnx".
        max_pixels: refuse larger images (decompression-bomb guard); None for no limit.
    """
    rgb, tags = load_photo(image, max_pixels)
    height, width = rgb.shape[:2]
    if focal_length_px is None:
        focal_length_px = focal_mm_to_px(focal_length_35mm(tags), width, height)
    elif not (np.isfinite(focal_length_px) and focal_length_px > 0):
        raise SplatforgeError(f"focal length must be a positive number of pixels, "
                              f"got {focal_length_px}")
    disparity_factor = torch.tensor([focal_length_px / width], dtype=torch.float32)
    if backend == "torch":
        if not isinstance(predictor, RGBGaussianPredictor):
            raise SplatforgeError("backend 'torch' needs a predictor from build_predictor()")
        size = predictor.internal_resolution()
        device = next(predictor.parameters()).device
        raw = predictor(network_input(rgb, size).to(device), disparity_factor.to(device))
        color_space = predictor.params.color_space
    elif backend == "onnx":
        from .onnx import OnnxPredictor, load_onnx_predictor

        if not isinstance(predictor, OnnxPredictor):
            predictor = load_onnx_predictor(predictor)
        return predictor.predict(rgb, focal_length_px)  # whole-pipeline or network-only graph
    else:
        raise SplatforgeError(f"unknown backend {backend!r}; use 'torch' or 'onnx'")
    return unproject(raw, focal_length_px, (width, height), size, color_space)


__all__ = ["PRESETS", "Prediction", "build_predictor", "load_photo", "predict_image"]
