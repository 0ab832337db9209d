"""The LGM network against 3DTopia/LGM's reference code (fixtures from
tools/lgm_reference/make_fixtures.py): module tree and key names of every shipped config, the
input tensor (ImageNet normalisation, Plücker rays of LGM's cameras) and the Gaussians."""

from __future__ import annotations

import json

import pytest
import torch

from splatforge.generate.lgm import PRESETS, LGMNetwork, preset_config
from splatforge.generate.lgm.cameras import input_rays, network_input, orbit_camera_to_world

from .conftest import DATA


@pytest.mark.parametrize("preset", ["big", "small", "tiny"])
def test_state_dict_keys_and_shapes_match_the_reference(preset):
    expected = json.loads((DATA / "lgm_keys.json").read_text())[preset]
    with torch.device("meta"):
        model = LGMNetwork(preset_config(preset))
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert list(ours) == list(expected)
    assert ours == expected


def test_the_released_config_has_415m_parameters_and_128x128_gaussians_per_view():
    with torch.device("meta"):
        model = LGMNetwork(preset_config("big"))
    assert round(sum(p.numel() for p in model.parameters()) / 1e6) == 415
    assert preset_config("big").splat_size == 128
    assert preset_config("small").splat_size == preset_config("tiny").splat_size == 64


def test_mini_preset_is_the_fixture_config(reference):
    config = preset_config("mini")
    fixture = reference["config"]
    assert config.input_size == fixture["input_size"]
    assert list(config.down_channels) == fixture["down_channels"]
    assert list(config.down_attention) == fixture["down_attention"]
    assert config.mid_attention == fixture["mid_attention"]
    assert list(config.up_channels) == fixture["up_channels"]
    assert list(config.up_attention) == fixture["up_attention"]
    assert config.splat_size == fixture["splat_size"]


def test_network_input_matches_lgm(reference):
    x = network_input(reference["views"].numpy(), preset_config("mini"))
    torch.testing.assert_close(x, reference["network_input"], atol=1e-5, rtol=0)


def test_gaussians_match_lgm(reference):
    model = LGMNetwork(preset_config("mini")).eval()
    model.load_state_dict({k: v.float() for k, v in reference["state_dict"].items()}, strict=True)
    with torch.no_grad():
        gaussians = model(reference["network_input"])
    assert gaussians.shape == reference["gaussians"].shape == (1, 4 * 16 * 16, 14)
    assert (gaussians - reference["gaussians"]).abs().max() <= 1e-4
    # The reference output is not degenerate: the activations span their ranges.
    g = reference["gaussians"][0]
    assert g[:, 3].std() > 0.01 and g[:, 11:].std() > 0.01 and g[:, 4:7].std() > 1e-3


def test_activations_keep_gaussians_in_their_ranges():
    model = LGMNetwork(preset_config("mini")).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(5.0)  # push the raw outputs far outside every activation's linear range
        g = model(torch.randn(1, 4, 9, 32, 32))[0]
    assert g[:, 0:3].abs().max() <= 1.0
    assert g[:, 0:3].abs().max() == 1.0  # the clamp was reached
    assert ((g[:, 3] >= 0) & (g[:, 3] <= 1)).all()  # float32 sigmoid saturates at exactly 0 and 1
    assert (g[:, 4:7] >= 0).all()
    torch.testing.assert_close(g[:, 7:11].norm(dim=-1), torch.ones(len(g)))
    assert ((g[:, 11:] >= 0) & (g[:, 11:] <= 1)).all()


def test_input_cameras_circle_the_object_at_lgm_radius():
    config = preset_config("big")
    for azimuth in (0, 90, 180, 270):
        pose = orbit_camera_to_world(0, azimuth, config.cam_radius)
        eye = pose[:3, 3]
        assert eye.norm().item() == pytest.approx(1.5)
        assert torch.allclose(pose[:3, 2], eye / 1.5, atol=1e-6)  # OpenGL: the camera looks along -z
    rays = input_rays(config)
    assert rays.shape == (4, 6, 256, 256)
    # The central rays of each view pass (almost) through the origin: moment o x d ~ 0.
    centre = rays[:, :3, 127:129, 127:129].norm(dim=1)
    assert centre.max() < 1.5 * 0.01


def test_views_of_the_wrong_shape_are_refused():
    model = LGMNetwork(preset_config("mini"))
    with pytest.raises(ValueError, match=r"\[B, 4, 9, 32, 32\]"):
        model(torch.zeros(1, 3, 9, 32, 32))


def test_presets_are_named():
    assert PRESETS == ("big", "small", "tiny", "mini")
    with pytest.raises(ValueError, match="unknown LGM preset"):
        preset_config("huge")
