"""A checkpoint that fails to save leaves the previous one as the newest and no stray file."""

from __future__ import annotations

import pytest

pytest.importorskip("pycolmap")

from splatforge.capture import load_capture  # noqa: E402
from splatforge.train.run import newest_checkpoint, save_checkpoint  # noqa: E402
from splatforge.train.trainer import TrainConfig, Trainer  # noqa: E402

from .test_trainer import tiny_capture  # noqa: E402


def test_a_failed_checkpoint_save_leaves_no_temporary_file(tmp_path):
    root, *_ = tiny_capture(tmp_path, n_views=4)
    trainer = Trainer(load_capture(root, test_every=0), TrainConfig(max_steps=2, sh_degree=0))
    folder = tmp_path / "ckpts"
    good = save_checkpoint(trainer, folder)
    trainer.train_step()
    trainer.history.append({"note": lambda: None})  # torch.save cannot pickle a lambda: fails mid-file
    with pytest.raises(Exception, match="(?i)pickle"):
        save_checkpoint(trainer, folder)
    assert sorted(p.name for p in folder.iterdir()) == [good.name]
    path, state = newest_checkpoint(folder)
    assert path == good and state["step"] == 0
