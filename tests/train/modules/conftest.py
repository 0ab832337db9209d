from __future__ import annotations

import pytest

pytest.importorskip("pycolmap")

from . import evidence  # noqa: E402

VIEWS, SIZE = 24, 64


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """The demo scene's capture, 24 views at 64x64 (21 training, 3 held out)."""
    return evidence.load_demo(tmp_path_factory.mktemp("modules_demo"), VIEWS, SIZE)
