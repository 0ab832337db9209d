"""Densification strategies (dataclasses with gsplat's defaults) and the operations they share."""

from .default import DefaultStrategy

__all__ = ["DefaultStrategy"]
