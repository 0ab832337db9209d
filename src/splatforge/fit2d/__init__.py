"""fit: approximate one image with N 2D Gaussians."""

from .fit import FitConfig, FitResult, fit_image, load_fit, render_fit, save_fit
from .model import Gaussians2D, render_gaussians_2d

__all__ = ["FitConfig", "FitResult", "fit_image", "load_fit", "render_fit", "save_fit", "Gaussians2D",
           "render_gaussians_2d"]
