"""The re-implemented SHARP network against ml-sharp: identical state-dict layout (official size
and a second configuration) and identical outputs of the small model with ml-sharp's weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from splatforge.predict.sharp import PredictorParams, ViTConfig, create_predictor
from splatforge.predict.sharp.params import (
    AlignmentParams,
    GaussianDecoderParams,
    MonodepthParams,
)
from splatforge.predict.sharp.presets import preset_params, randomize_weights

from .conftest import DATA


def keys_and_shapes(model) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def test_full_size_state_dict_matches_ml_sharp_exactly():
    with torch.device("meta"):
        model = create_predictor(PredictorParams())
    expected = json.loads((DATA / "sharp_keys_default.json").read_text())
    ours = keys_and_shapes(model)
    assert list(ours) == list(expected)  # same keys, same order
    assert ours == expected
    assert sum(np.prod(s) for s in ours.values()) > 700_000_000


def variant_params() -> PredictorParams:
    """tools/sharp_reference/make_fixtures.py's second configuration, in our dataclasses."""
    vit = ViTConfig(embed_dim=24, depth=3, num_heads=3, init_values=0.1, img_size=48,
                    patch_size=16, num_classes=7, mlp_mode="glu", mlp_ratio=2.0)
    params = PredictorParams(
        monodepth=MonodepthParams(patch_encoder=vit, image_encoder=ViTConfig(**vars(vit)),
                                  encoder_dims=(8, 16, 16, 24), hook_block_ids=(2, 0, 1, 2),
                                  dims_decoder=(8, 16, 16, 24, 24), use_patch_overlap=False),
        gaussian_decoder=GaussianDecoderParams(dim_out=8, dims_decoder=(16, 8, 8, 16, 16),
                                               image_encoder_type="skip_conv", stride=2),
        depth_alignment=AlignmentParams(base_width=8, steps=3, stride=2),
        num_monodepth_layers=1,
    )
    params.initializer.num_layers = 1
    return params


def test_other_configuration_state_dict_matches_ml_sharp():
    expected = json.loads((DATA / "sharp_keys_variant.json").read_text())
    model = create_predictor(variant_params())
    assert keys_and_shapes(model) == expected


def test_small_model_reproduces_ml_sharp_outputs(small_predictor, reference):
    with torch.no_grad():
        mono = small_predictor.monodepth_model(torch.from_numpy(reference["network_input"]))
        raw = small_predictor(torch.from_numpy(reference["network_input"]),
                              torch.from_numpy(reference["disparity_factor"]))
    np.testing.assert_allclose(mono.disparity.numpy(), reference["monodepth_disparity"],
                               atol=1e-4, rtol=0)
    for field in raw._fields:
        ours = getattr(raw, field).numpy()
        ref = reference[f"raw_{field}"]
        assert ours.shape == ref.shape, field
        assert np.abs(ours - ref).max() <= 1e-4, field
    # The weights are not degenerate: the prediction head and ViTs move the Gaussians.
    assert np.std(reference["raw_quaternions"][..., 1]) > 1e-3


def test_small_preset_matches_the_fixture_configuration():
    state = torch.load(DATA / "sharp_small_state_dict.pt", weights_only=True)
    model = create_predictor(preset_params("small"))
    assert keys_and_shapes(model) == {k: list(v.shape) for k, v in state.items()}
    size_mb = sum(v.numel() * v.element_size() for v in state.values()) / 2**20
    assert size_mb < 5


def test_seeded_small_model_is_deterministic_and_not_trivial():
    a, b = create_predictor(preset_params("small")), create_predictor(preset_params("small"))
    randomize_weights(a, 7)
    randomize_weights(b, 7)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    c = create_predictor(preset_params("small"))
    randomize_weights(c, 8)
    assert not torch.equal(a.state_dict()["prediction_head.texture_prediction_head.weight"],
                           c.state_dict()["prediction_head.texture_prediction_head.weight"])


def test_bad_configurations_are_rejected():
    params = preset_params("small")
    params.monodepth.use_patch_overlap = True  # needs a 24x24 token grid
    with pytest.raises(ValueError, match="24"):
        create_predictor(params)
    params = preset_params("small")
    params.monodepth.patch_encoder.patch_size = 8
    with pytest.raises(ValueError, match="patch_size must be 16"):
        create_predictor(params)
    with pytest.raises(ValueError, match="unknown SHARP preset"):
        preset_params("huge")


def test_overlapping_sliding_pyramid_matches_ml_sharp():
    """The official network's encoder path (5x5 + 3x3 + 1 overlapping crops of a 1536x1536
    input, stitched with 3- and 6-token trims), with tiny ViTs and ml-sharp's weights."""
    from splatforge.predict.sharp.encoders import SlidingPyramidNetwork
    from splatforge.predict.sharp.vit import VisionTransformer

    fixture = torch.load(DATA / "sharp_overlap_encoder.pt", weights_only=True)
    vit = ViTConfig(embed_dim=16, depth=2, num_heads=2, img_size=384, patch_size=16,
                    num_classes=0)
    encoder = SlidingPyramidNetwork(
        [8, 8, 8, 8, 8], VisionTransformer(vit, intermediate_features_ids=[0, 1, 1, 1]),
        VisionTransformer(vit), use_patch_overlap=True)
    encoder.load_state_dict(fixture["state_dict"], strict=True)
    i = torch.arange(1536, dtype=torch.float32)
    rows, cols = i[:, None], i[None, :]
    image = torch.stack([torch.sin(0.031 * rows + 0.017 * cols),
                         torch.cos(0.023 * rows - 0.041 * cols),
                         torch.sin(0.011 * rows * 0.5 + 0.007 * cols + 1.0)])[None]
    with torch.no_grad():
        outputs = encoder.eval()(image)
    assert [list(o.shape) for o in outputs] == fixture["shapes"]
    assert fixture["shapes"][0] == [1, 8, 768, 768]
    for ours, ref in zip(outputs, fixture["outputs"]):
        assert (ours[..., ::16, ::16] - ref).abs().max() <= 1e-4
