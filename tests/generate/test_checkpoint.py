"""Loading LGM weights: safetensors and torch files, and every way a checkpoint can be wrong."""

from __future__ import annotations

import pytest
import torch

from splatforge.errors import SplatforgeError
from splatforge.generate import build_generator
from splatforge.generate.lgm.checkpoint import RELEASED_FILE

from .conftest import object_views


def test_safetensors_and_torch_files_give_the_same_network(reference, mini_checkpoint, tmp_path):
    torch_file = tmp_path / "mini.pt"
    torch.save({"state_dict": reference["state_dict"]}, torch_file)  # training scripts nest it
    a = build_generator("mini", checkpoint=mini_checkpoint)
    b = build_generator("mini", checkpoint=torch_file)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert p.dtype == torch.float32, name  # the float16 file is widened, as LGM's eval does
        assert torch.equal(p, q), name
    with torch.no_grad():
        out = a(reference["network_input"])
    assert (out - reference["gaussians"]).abs().max() <= 1e-4


def test_a_checkpoint_of_another_preset_names_it_and_the_mismatched_keys(mini_checkpoint):
    with pytest.raises(SplatforgeError) as err:
        build_generator("tiny", checkpoint=mini_checkpoint)
    message = str(err.value)
    assert str(mini_checkpoint) in message
    assert "it is a 'mini' checkpoint: pass --preset mini" in message
    # tiny widens its second level to 64 channels (mini keeps 32) and has 5 levels, not 3
    assert "wrong shapes: unet.down_blocks.1.nets.0.conv1.weight: checkpoint (32, 32, 3, 3), model (64, 32, 3, 3)" in message
    assert "missing keys: unet.down_blocks.1.nets.0.shortcut.weight" in message
    assert "unexpected keys: unet.down_blocks.2.attns.0" in message  # mini has attention there, tiny not


def test_a_foreign_state_dict_is_not_taken_for_any_preset(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"encoder.weight": torch.zeros(3, 3)}, str(path))
    with pytest.raises(SplatforgeError, match="not an LGM checkpoint of any preset.*unexpected keys: encoder.weight"):
        build_generator("mini", checkpoint=path)


@pytest.mark.parametrize("content, message", [
    (None, "checkpoint not found"),
    (b"not a tensor file", "is not a readable checkpoint"),
])
def test_missing_and_corrupt_files(tmp_path, content, message):
    path = tmp_path / "model.safetensors"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SplatforgeError, match=message):
        build_generator("mini", checkpoint=path)


def test_a_torch_file_without_a_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(SplatforgeError, match="does not hold a state dict"):
        build_generator("mini", checkpoint=path)


def test_released_weights_missing_from_the_cache_say_how_to_get_them(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(SplatforgeError) as err:
        build_generator("big")
    assert f"hf download ashawkey/LGM {RELEASED_FILE}" in str(err.value)
    assert "--checkpoint PATH" in str(err.value)


def test_presets_without_released_weights_need_a_checkpoint_or_a_seed():
    with pytest.raises(SplatforgeError, match="'small' has no released weights"):
        build_generator("small")
    with pytest.raises(SplatforgeError, match="unknown LGM preset 'huge'"):
        build_generator("huge", seed=0)


def test_seeded_random_weights_are_reproducible():
    from splatforge.generate.api import run_network

    views = object_views()
    a = run_network(build_generator("mini", seed=3), views)
    b = run_network(build_generator("mini", seed=3), views)
    c = run_network(build_generator("mini", seed=4), views)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
