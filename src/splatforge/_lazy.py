"""Package attributes imported on first use, so that importing a package stays light.

A package's `__init__` names where each public attribute lives; `import splatforge.core.images`
then no longer drags torch in through `splatforge.core.gaussians`:

    __getattr__, __dir__ = lazy_exports(__name__, {"Gaussians": ".gaussians", ...})
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable


def lazy_exports(package: str, where: dict[str, str]) -> tuple[Callable, Callable]:
    """`(__getattr__, __dir__)` for `package`: attribute NAME comes from module `where[NAME]`
    (relative to the package), imported the first time NAME is read, then cached."""

    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__
