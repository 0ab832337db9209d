"""predict: one photo -> 3D Gaussians with Apple's SHARP network (re-implemented; the official
checkpoint loads unchanged), vectorized unprojection, ml-sharp's PLY layout, ONNX export."""

from .api import Prediction, build_predictor, load_photo, predict_image
from .ply import save_ply
from .sharp import PredictorParams, RGBGaussianPredictor, create_predictor
from .sharp.presets import PRESETS

__all__ = ["PRESETS", "Prediction", "PredictorParams", "RGBGaussianPredictor", "build_predictor",
           "create_predictor", "load_photo", "predict_image", "save_ply"]
