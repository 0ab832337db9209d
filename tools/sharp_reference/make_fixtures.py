"""Generate SHARP parity fixtures from Apple's reference code (apple/ml-sharp), by hand.

Not run in CI: it needs ml-sharp's source and timm, which splatforge does not depend on. Use a
separate virtualenv so the project's stays clean, e.g.

    python3 -m venv /tmp/sharpref-venv
    /tmp/sharpref-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 timm==1.0.20 \
        numpy scipy plyfile
    PYTHONPATH=/path/to/ml-sharp/src /tmp/sharpref-venv/bin/python \
        tools/sharp_reference/make_fixtures.py tests/predict/data

It builds ml-sharp's predictor with the small configuration below (registered as an extra ViT
preset in ml-sharp's preset tables; every other number goes through ml-sharp's own
`PredictorParams`), gives it seeded random weights, runs it on a deterministic image exactly as
ml-sharp's `predict_image` does (resize with align_corners=True, disparity factor f_px / width,
unprojection with ml-sharp's `unproject_gaussians`) and writes:

    sharp_small_state_dict.pt     the small model's state dict
    sharp_small_io.npz            input image, network input, raw outputs, final Gaussians
    sharp_small_reference.ply     ml-sharp's save_ply of the final Gaussians
    sharp_keys_default.json       key -> shape of create_predictor(PredictorParams())
    sharp_keys_variant.json       the same for a second small configuration (GLU MLP, no
                                  patch overlap, one monodepth layer, other hooks and widths)
    sharp_overlap_encoder.pt      the overlapping sliding-pyramid encoder (the official
                                  network's path, 1536x1536 input) with tiny ViTs: its state
                                  dict and every 16th row/column of its five feature maps for
                                  a formula-generated input
    sharp_small_config.json       the small configuration, for the record

splatforge's tests (tests/predict/) load these; `splatforge.predict.presets` must describe the
same small configuration.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

from sharp.models import PredictorParams, create_predictor
from sharp.models.params import (
    AlignmentParams,
    GaussianDecoderParams,
    MonodepthParams,
)
from sharp.models.presets import (
    MONODEPTH_ENCODER_DIMS_MAP,
    MONODEPTH_HOOK_IDS_MAP,
    VIT_CONFIG_DICT,
    ViTConfig,
)
from sharp.utils.gaussians import compose_covariance_matrices, save_ply, unproject_gaussians

SEED = 1234
IMAGE_HEIGHT, IMAGE_WIDTH = 72, 108
F_MM = 26.0


def register_presets() -> None:
    """Small ViTs. The feature maps are 32x and the input 64x the token grid, whatever the
    ViT's crop size, so a smaller input needs a smaller grid: 2x2 tokens of 16 pixels, without
    patch overlap (which needs 24x24), give a 128x128 input and 2 x 64 x 64 Gaussians."""
    VIT_CONFIG_DICT["splatforge_small"] = ViTConfig(
        in_chans=3, embed_dim=32, depth=4, num_heads=2, init_values=1e-5,
        img_size=32, patch_size=16, num_classes=10, global_pool="")
    MONODEPTH_ENCODER_DIMS_MAP["splatforge_small"] = [16, 16, 24, 32]
    MONODEPTH_HOOK_IDS_MAP["splatforge_small"] = [0, 1, 2, 3]

    VIT_CONFIG_DICT["splatforge_variant"] = ViTConfig(
        in_chans=3, embed_dim=24, depth=3, num_heads=3, init_values=0.1,
        img_size=48, patch_size=16, num_classes=7, global_pool="", mlp_mode="glu", mlp_ratio=2.0)
    MONODEPTH_ENCODER_DIMS_MAP["splatforge_variant"] = [8, 16, 16, 24]
    MONODEPTH_HOOK_IDS_MAP["splatforge_variant"] = [2, 0, 1, 2]

    VIT_CONFIG_DICT["splatforge_overlap"] = ViTConfig(
        in_chans=3, embed_dim=16, depth=2, num_heads=2, init_values=1e-5,
        img_size=384, patch_size=16, num_classes=0, global_pool="")
    MONODEPTH_ENCODER_DIMS_MAP["splatforge_overlap"] = [8, 8, 8, 8]
    MONODEPTH_HOOK_IDS_MAP["splatforge_overlap"] = [0, 1, 1, 1]


def overlap_input() -> torch.Tensor:
    """A deterministic [1, 3, 1536, 1536] input in [-1, 1] (formula, not a random generator)."""
    i = torch.arange(1536, dtype=torch.float32)
    rows, cols = i[:, None], i[None, :]
    return torch.stack([torch.sin(0.031 * rows + 0.017 * cols),
                        torch.cos(0.023 * rows - 0.041 * cols),
                        torch.sin(0.011 * rows * 0.5 + 0.007 * cols + 1.0)])[None]


def make_overlap_fixture(out_dir: Path) -> None:
    from sharp.models.encoders import create_monodepth_encoder

    encoder = create_monodepth_encoder("splatforge_overlap", "splatforge_overlap",
                                       use_patch_overlap=True, last_encoder=8)
    gen = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for p in encoder.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel() if p.ndim > 1
                                                                    else 4))
        outputs = encoder.eval()(overlap_input())
    torch.save({"state_dict": {k: v.clone() for k, v in encoder.state_dict().items()},
                "outputs": [o[..., ::16, ::16].clone() for o in outputs],
                "shapes": [list(o.shape) for o in outputs]},
               out_dir / "sharp_overlap_encoder.pt")


def small_params() -> PredictorParams:
    params = PredictorParams(
        monodepth=MonodepthParams(
            patch_encoder_preset="splatforge_small", image_encoder_preset="splatforge_small",
            dims_decoder=(16, 16, 16, 16, 16), use_patch_overlap=False),
        gaussian_decoder=GaussianDecoderParams(
            dim_out=16, dims_decoder=(16, 16, 16, 16, 16)),
        depth_alignment=AlignmentParams(base_width=8, steps=2),
    )
    return params


def variant_params() -> PredictorParams:
    params = PredictorParams(
        monodepth=MonodepthParams(
            patch_encoder_preset="splatforge_variant", image_encoder_preset="splatforge_variant",
            dims_decoder=(8, 16, 16, 24, 24), use_patch_overlap=False),
        gaussian_decoder=GaussianDecoderParams(
            dim_out=8, dims_decoder=(16, 8, 8, 16, 16), image_encoder_type="skip_conv",
            stride=2),
        depth_alignment=AlignmentParams(base_width=8, steps=3, stride=2),
        num_monodepth_layers=1,
    )
    params.initializer.num_layers = 1
    return params


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Seeded weights that make every part of the network matter (ml-sharp zero-initializes
    its prediction head and starts LayerScale at 1e-5, which would hide most of it)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".gamma"):
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
            elif p.ndim == 1:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = p[0].numel() if p.ndim > 1 else 1
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
        # A positive bias on the disparity head keeps the depth away from the 1e-4 clamp.
        model.monodepth_model.monodepth_predictor.head[4].bias.fill_(0.5)


def test_image() -> np.ndarray:
    y, x = np.mgrid[0:IMAGE_HEIGHT, 0:IMAGE_WIDTH].astype(np.float64)
    r = 127.5 + 120 * np.sin(x / 9.0) * np.cos(y / 13.0)
    g = 255.0 * x / (IMAGE_WIDTH - 1)
    b = 255.0 * ((x // 12 + y // 12) % 2) * 0.8 + 20
    return np.clip(np.stack([r, g, b], axis=-1).round(), 0, 255).astype(np.uint8)


def focal_px(width: int, height: int, f_mm: float) -> float:
    # ml-sharp's io.convert_focallength (sharp.utils.io imports matplotlib/pillow_heif).
    return f_mm * math.sqrt(width**2 + height**2) / math.sqrt(36**2 + 24**2)


def keys_and_shapes(model: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def build_default_keys() -> dict[str, list[int]]:
    try:
        with torch.device("meta"):
            return keys_and_shapes(create_predictor(PredictorParams()))
    except (RuntimeError, NotImplementedError):  # some init step needs real tensors
        return keys_and_shapes(create_predictor(PredictorParams()))


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    register_presets()
    torch.manual_seed(SEED)

    params = small_params()
    model = create_predictor(params)
    randomize(model, SEED)
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save(state, out_dir / "sharp_small_state_dict.pt")

    image = test_image()
    height, width = image.shape[:2]
    f_px = focal_px(width, height, F_MM)
    size = model.internal_resolution()
    internal_shape = (size, size)

    # ml-sharp's cli.predict.predict_image with its fixed 1536 replaced by the model's size.
    with torch.no_grad():
        image_pt = torch.from_numpy(image.copy()).float().permute(2, 0, 1) / 255.0
        disparity_factor = torch.tensor([f_px / width]).float()
        image_resized = torch.nn.functional.interpolate(
            image_pt[None], size=(internal_shape[1], internal_shape[0]), mode="bilinear",
            align_corners=True)
        mono = model.monodepth_model(image_resized)
        raw = model(image_resized, disparity_factor)
        intrinsics = torch.tensor([[f_px, 0, width / 2, 0], [0, f_px, height / 2, 0],
                                   [0, 0, 1, 0], [0, 0, 0, 1]]).float()
        intrinsics_resized = intrinsics.clone()
        intrinsics_resized[0] *= internal_shape[0] / width
        intrinsics_resized[1] *= internal_shape[1] / height
        final = unproject_gaussians(raw, torch.eye(4), intrinsics_resized, internal_shape)
        covariances = compose_covariance_matrices(final.quaternions, final.singular_values)

    arrays = {
        "image": image,
        "f_px": np.float64(f_px),
        "network_input": image_resized.numpy(),
        "disparity_factor": disparity_factor.numpy(),
        "monodepth_disparity": mono.disparity.numpy(),
    }
    for prefix, g in (("raw", raw), ("final", final)):
        for field in g._fields:
            arrays[f"{prefix}_{field}"] = getattr(g, field).numpy()
    arrays["final_covariances"] = covariances.numpy()
    np.savez_compressed(out_dir / "sharp_small_io.npz", **arrays)
    save_ply(final, f_px, (height, width), out_dir / "sharp_small_reference.ply")

    (out_dir / "sharp_keys_default.json").write_text(json.dumps(build_default_keys(), indent=0))
    variant = create_predictor(variant_params())
    (out_dir / "sharp_keys_variant.json").write_text(json.dumps(keys_and_shapes(variant),
                                                                indent=0))
    make_overlap_fixture(out_dir)
    config = {"small": {"vit": VIT_CONFIG_DICT["splatforge_small"].asdict(),
                        "encoder_dims": MONODEPTH_ENCODER_DIMS_MAP["splatforge_small"],
                        "hooks": MONODEPTH_HOOK_IDS_MAP["splatforge_small"]},
              "variant": {"vit": VIT_CONFIG_DICT["splatforge_variant"].asdict(),
                          "encoder_dims": MONODEPTH_ENCODER_DIMS_MAP["splatforge_variant"],
                          "hooks": MONODEPTH_HOOK_IDS_MAP["splatforge_variant"]},
              "seed": SEED, "f_mm": F_MM, "torch": torch.__version__}
    (out_dir / "sharp_small_config.json").write_text(json.dumps(config, indent=1))
    print(f"wrote fixtures to {out_dir}: {raw.mean_vectors.shape[1]} Gaussians")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/predict/data"))
