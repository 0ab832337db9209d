"""Densification strategies (dataclasses with gsplat's defaults) and the operations they share."""

from .default import DefaultStrategy
from .mcmc import MCMCStrategy

__all__ = ["DefaultStrategy", "MCMCStrategy"]
