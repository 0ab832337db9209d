"""Checkpoints: strict loading, clear errors for bad files, the offline download error."""

from __future__ import annotations

import urllib.error

import pytest
import torch

from splatforge.errors import SplatforgeError
from splatforge.predict import build_predictor
from splatforge.predict import checkpoint as ckpt
from splatforge.predict.sharp import create_predictor

from .conftest import DATA


def test_checkpoint_loads_into_the_small_preset():
    model = build_predictor("small", checkpoint=DATA / "sharp_small_state_dict.pt")
    state = torch.load(DATA / "sharp_small_state_dict.pt", weights_only=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key])
    assert not model.training


def test_bad_checkpoints_are_clear_errors(tmp_path):
    state = torch.load(DATA / "sharp_small_state_dict.pt", weights_only=True)
    with pytest.raises(SplatforgeError, match="not found"):
        build_predictor("small", checkpoint=tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(SplatforgeError, match="not a readable PyTorch checkpoint"):
        build_predictor("small", checkpoint=tmp_path / "junk.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(SplatforgeError, match="does not hold a state dict"):
        build_predictor("small", checkpoint=tmp_path / "list.pt")
    partial = dict(state)
    del partial["prediction_head.texture_prediction_head.weight"]
    partial["extra.weight"] = torch.zeros(1)
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(SplatforgeError, match=r"1 missing keys: prediction_head\.texture_pred"
                                              r"iction_head\.weight; 1 unexpected keys: extra"):
        build_predictor("small", checkpoint=tmp_path / "partial.pt")
    # The small weights are the wrong shapes for the official network: first mismatches listed.
    with torch.device("meta"):
        with pytest.raises(SplatforgeError, match=r"missing keys: .*\(\+\d+ more\)"):
            ckpt.load_weights(create_predictor(), state, "small.pt")


def test_offline_download_says_how_to_pass_a_local_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setattr(ckpt, "_notice_shown", False)
    with pytest.raises(SplatforgeError, match="--checkpoint PATH"):
        ckpt.download_official_checkpoint()
    assert ckpt.official_checkpoint_path().name == "sharp_2572gikvuh.pt"
    assert str(tmp_path / "hub") in str(ckpt.official_checkpoint_path())
    ckpt.print_licence_notice()
    ckpt.print_licence_notice()
    assert capsys.readouterr().err.count("research use only") == 1


def test_presets_and_seeds():
    with pytest.raises(SplatforgeError, match="unknown SHARP preset"):
        build_predictor("huge", seed=0)
    with pytest.raises(SplatforgeError, match="no released weights"):
        build_predictor("small")
    a = build_predictor("small", seed=3)
    b = build_predictor("small", seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
