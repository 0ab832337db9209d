"""generate: one picture of an object -> a 3D Gaussian object, with LGM (3DTopia/LGM).

ImageDream's multi-view diffusion (`generate.multiview`) imagines four views of the object; the
LGM network (`generate.lgm`, re-implemented; the released checkpoint loads unchanged) turns them
into Gaussians; `Generation.save_ply` writes the INRIA layout and `generate.render` a turntable.
"""

from .._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "Generation": ".api",
    "build_generator": ".api",
    "generate_image": ".api",
    "PRESETS": ".lgm.presets",
    "TurntableParams": ".render",
    "render_turntable": ".render",
})

__all__ = ["PRESETS", "Generation", "TurntableParams", "build_generator", "generate_image", "render_turntable"]
