"""SHARP (Apple's single-image Gaussian predictor) re-implemented with ml-sharp's module tree, so
its official checkpoint loads with `load_state_dict(strict=True)` unchanged."""

from .composer import SharpGaussians, linear_to_srgb, srgb_to_linear
from .params import PredictorParams, ViTConfig
from .predictor import RGBGaussianPredictor, create_predictor

__all__ = ["PredictorParams", "RGBGaussianPredictor", "SharpGaussians", "ViTConfig",
           "create_predictor", "linear_to_srgb", "srgb_to_linear"]
