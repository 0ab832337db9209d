"""The multi-view U-Net against LGM's diffusers port of ImageDream (fixtures made by
tools/imagedream_reference/make_fixtures.py): the released architecture's parameter names and
shapes, one denoising step of a tiny random model, and the cameras."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from splatforge.errors import SplatforgeError
from splatforge.generate.multiview.cameras import view_cameras
from splatforge.generate.multiview.unet import MultiViewUNet, UNetConfig

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def step() -> dict:
    return torch.load(DATA / "unet_tiny_step.pt", weights_only=True)


def _config(raw: dict, tmp_path: Path) -> UNetConfig:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    return UNetConfig.from_json(path)


def test_released_config_has_the_reference_parameters(tmp_path):
    reference = json.loads((DATA / "unet_released_keys.json").read_text())
    config = _config({"_class_name": "MultiViewUNetModel", **reference["config"]}, tmp_path)
    assert config == UNetConfig()  # the defaults are the released model
    with torch.device("meta"):
        ours = {k: list(v.shape) for k, v in MultiViewUNet(config).state_dict().items()}
    assert sorted(ours) == sorted(reference["parameters"])
    assert ours == reference["parameters"]
    assert len(ours) > 600


def test_one_denoising_step_matches_the_reference(step, tmp_path):
    unet = MultiViewUNet(_config(step["config"], tmp_path)).eval()
    unet.load_state_dict({k: v.float() for k, v in step["state_dict"].items()}, strict=True)
    inputs = dict(step["inputs"])
    x = inputs["x"].clone()
    with torch.no_grad():
        out = unet(inputs["x"], inputs["timesteps"], inputs["context"], camera=inputs["camera"],
                   num_views=inputs["num_frames"], ip=inputs["ip"], ip_img=inputs["ip_img"])
    assert torch.equal(inputs["x"], x), "the U-Net must not write into its input"
    assert out.shape == step["output"].shape
    torch.testing.assert_close(out, step["output"], atol=1e-4, rtol=0)
    # the picture's latent replaces the last view: the noisy latent there does not matter
    inputs["x"][4::5] += 1.0
    with torch.no_grad():
        again = unet(inputs["x"], inputs["timesteps"], inputs["context"], camera=inputs["camera"],
                     num_views=5, ip=inputs["ip"], ip_img=inputs["ip_img"])
    torch.testing.assert_close(again, out, atol=1e-5, rtol=0)


def test_cameras_match_the_reference(step):
    torch.testing.assert_close(torch.from_numpy(view_cameras(4, elevation=0.0)),
                               step["camera_elevation_0"], atol=1e-6, rtol=0)
    front = view_cameras(4)[0].reshape(4, 4)
    assert front[3, 3] == 1 and abs(front[:3, :3] @ front[:3, :3].T - torch.eye(3).numpy()).max() < 1e-6
    assert not view_cameras(4)[4].any()


@pytest.mark.parametrize("entry, message", [
    ({"use_scale_shift_norm": True}, "not supported"),
    ({"cross_attention_dim": 768}, "unknown U-Net config entry"),
])
def test_config_entries_that_would_change_the_network_are_refused(entry, message, tmp_path):
    with pytest.raises(SplatforgeError, match=message):
        _config({"model_channels": 32, **entry}, tmp_path)
