"""generate.multiview: ImageDream's multi-view diffusion (one picture -> four views at LGM's
cameras), re-implemented on diffusers' VAE and scheduler and transformers' CLIP encoders; the
released diffusers-format weights (ashawkey/imagedream-ipmv-diffusers) load unchanged."""

from ..._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "MultiViewPipeline": ".pipeline",
    "DEFAULT_MODEL": ".weights",
    "MultiViewUNet": ".unet",
    "UNetConfig": ".unet",
    "view_cameras": ".cameras",
})

__all__ = ["DEFAULT_MODEL", "MultiViewPipeline", "MultiViewUNet", "UNetConfig", "view_cameras"]
