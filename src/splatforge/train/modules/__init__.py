"""Optimization modules for the trainer (see base.OptModule), built from TrainConfig.modules."""

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
    modules = []
    for name in names:
        if name not in REGISTRY:
            raise SplatforgeError(f"unknown module {name!r}; known: {', '.join(sorted(REGISTRY)) or 'none'}")
        module = REGISTRY[name]()
        module.setup(capture, config)
        modules.append(module)
    return modules


__all__ = ["OptModule", "RenderBatch", "REGISTRY", "register_module", "build_modules"]
