"""`train --viewer`: a live viewer follows the run and is closed at the end."""

from __future__ import annotations

import socket

import pytest

pytest.importorskip("pycolmap")
pytest.importorskip("viser")

from splatforge.capture import load_capture  # noqa: E402
from splatforge.train.run import RunOptions, run_training  # noqa: E402
from splatforge.train.trainer import TrainConfig  # noqa: E402

from .test_trainer import tiny_capture  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_training_with_the_live_viewer(tmp_path, monkeypatch):
    from splatforge.view import live as live_module

    updates = []
    original = live_module.LiveViewer.update

    def spy(self, step, gaussians, stats=None):
        updates.append((step, len(gaussians), dict(stats)))
        return original(self, step, gaussians, stats)

    monkeypatch.setattr(live_module.LiveViewer, "update", spy)
    root, *_ = tiny_capture(tmp_path)
    port = _free_port()
    run_training(load_capture(root), tmp_path / "run", TrainConfig(max_steps=12),
                 RunOptions(viewer=True, viewer_port=port, viewer_every=5, progress=False, renders=False))
    assert [u[0] for u in updates] == [1, 6, 11]  # the first step at once, then every 5
    assert {"loss", "psnr", "count", "steps_per_second"} <= set(updates[0][2])
    with socket.socket() as s:  # closed: the port is free again
        s.bind(("127.0.0.1", port))
