"""Optimization modules for the trainer (see base.OptModule), built from TrainConfig.modules.

Every module is off unless named in `TrainConfig.modules` ("pose,appearance"); its options come
from `TrainConfig.module_options[name]` (a dict checked against the module's config dataclass):

    pose        per-image camera pose refinement (pose.PoseConfig)
    appearance  per-image appearance embedding + MLP colour correction (appearance.AppearanceConfig)
    bilateral   per-image bilateral grid of affine colour transforms (bilateral.BilateralConfig)
    blur        per-image blur: wider Gaussians blended through a predicted mask (blur.BlurConfig)
    background  a learned background colour (background.BackgroundConfig)
"""

from __future__ import annotations

from .base import OptModule, RenderBatch

REGISTRY: dict[str, type] = {}


def register_module(cls: type) -> type:
    REGISTRY[cls.name] = cls
    return cls


def build_modules(spec: str, capture, config) -> list[OptModule]:
    """Modules named in `spec` ("pose,appearance"), each set up for the capture; "" for none."""
    from ...errors import SplatforgeError

    names = [s.strip() for s in spec.split(",") if s.strip()] if spec else []
    if len(set(names)) != len(names):
        raise SplatforgeError(f"a module is named twice in {spec!r}")
    options = getattr(config, "module_options", None) or {}
    if not isinstance(options, dict):
        raise SplatforgeError(f"module_options must be a dict of module name: options, got {options!r}")
    unused = sorted(set(options) - set(names))
    if unused:
        raise SplatforgeError(f"module_options names module(s) {', '.join(map(repr, unused))} that are not enabled "
                              f"(modules={spec!r})")
    modules = []
    for name in names:
        if name not in REGISTRY:
            raise SplatforgeError(f"unknown module {name!r}; known: {', '.join(sorted(REGISTRY)) or 'none'}")
        module = REGISTRY[name]()
        module.setup(capture, config)
        modules.append(module)
    return modules


from . import appearance, background, bilateral, blur, pose  # noqa: E402,F401  (register the modules)

__all__ = ["OptModule", "RenderBatch", "REGISTRY", "register_module", "build_modules"]
