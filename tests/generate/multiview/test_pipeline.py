"""The multi-view pipeline's wiring with tiny random parts loaded from a diffusers-layout folder:
shapes, range, determinism, what the seed and the picture change, and the errors a user can meet
(weights not in the Hugging Face cache, an incomplete folder, a U-Net file of another config)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from splatforge.errors import SplatforgeError
from splatforge.generate.multiview import DEFAULT_MODEL, MultiViewPipeline
from splatforge.generate.multiview.pipeline import IMAGE_SIZE

SIZE = 64  # the views' size with the tiny parts (ImageDream's is 256)


@pytest.fixture(scope="module")
def pipeline(tiny_pipeline_folder):
    return MultiViewPipeline.load(str(tiny_pipeline_folder), image_size=SIZE)


def _picture(seed: int = 0, size: tuple[int, int] = (48, 40)) -> np.ndarray:
    return np.random.default_rng(seed).random((*size, 3), dtype=np.float32)


def test_four_views_deterministic_per_seed(pipeline):
    views = pipeline(_picture(), steps=1, guidance=5.0, seed=3, progress=False)
    assert views.shape == (4, SIZE, SIZE, 3) and views.dtype == np.float32
    assert 0.0 <= views.min() and views.max() <= 1.0 and views.std() > 0
    again = pipeline(_picture(), steps=1, guidance=5.0, seed=3, progress=False)
    np.testing.assert_array_equal(views, again)
    other_seed = pipeline(_picture(), steps=1, guidance=5.0, seed=4, progress=False)
    assert np.abs(other_seed - views).max() > 1e-3
    other_picture = pipeline(_picture(1), steps=1, guidance=5.0, seed=3, progress=False)
    assert np.abs(other_picture - views).max() > 1e-6


def test_guidance_one_runs_a_single_batch(pipeline):
    seen = []
    hook = pipeline.unet.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    try:
        pipeline(_picture(), steps=1, guidance=1.0, progress=False)
        pipeline(_picture(), steps=1, guidance=5.0, progress=False)
    finally:
        hook.remove()
    assert seen == [5, 10]  # 4 views + the picture's view, doubled for classifier-free guidance


def test_views_follow_lgm_order(pipeline, tiny_pipeline_folder):
    """The views returned are the diffusion frames 1, 2, 3, 0 (LGM's infer.py order): decoding
    the final latents in that order gives exactly the returned views."""
    latents = {}
    original_step = pipeline.scheduler.step

    def step(*args, **kwargs):
        out = original_step(*args, **kwargs)
        latents["last"] = out[0]
        return out

    pipeline.scheduler.step = step
    try:
        views = pipeline(_picture(), steps=1, seed=1, progress=False)
    finally:
        del pipeline.scheduler.step
    scale = pipeline.vae.config.scaling_factor
    with torch.no_grad():
        frame0 = pipeline.vae.decode(latents["last"][:1] / scale).sample
    frame0 = (frame0 / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()[0]
    np.testing.assert_allclose(views[3], frame0, atol=1e-5)


@pytest.mark.parametrize("image", [np.zeros((32, 32)), np.zeros((32, 32, 4), np.float32),
                                   np.zeros((0, 32, 3), np.float32)])
def test_bad_pictures_are_refused(pipeline, image):
    with pytest.raises(SplatforgeError, match=r"RGB image \[H, W, 3\]"):
        pipeline(image, steps=1, progress=False)


def test_missing_weights_offline_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    with pytest.raises(SplatforgeError) as err:
        MultiViewPipeline.load()
    message = str(err.value)
    assert DEFAULT_MODEL in message and f"hf download {DEFAULT_MODEL}" in message
    assert "not in the Hugging Face cache" in message


def test_a_repo_in_the_cache_loads_without_network(tiny_pipeline_folder, tmp_path, monkeypatch):
    """A snapshot in the Hugging Face cache layout (what `hf download` leaves) is found offline."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    repo = cache / "models--someone--tiny-imagedream"
    shutil.copytree(tiny_pipeline_folder, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    default = MultiViewPipeline.load("someone/tiny-imagedream")
    assert default.image_size == IMAGE_SIZE == 256 and default.latent_size == 32
    pipeline = MultiViewPipeline.load("someone/tiny-imagedream", image_size=SIZE)
    assert pipeline(_picture(), steps=1, progress=False).shape == (4, SIZE, SIZE, 3)


def test_incomplete_folder_names_what_is_missing(tiny_pipeline_folder, tmp_path):
    folder = tmp_path / "partial"
    shutil.copytree(tiny_pipeline_folder, folder)
    shutil.rmtree(folder / "image_encoder")
    with pytest.raises(SplatforgeError, match="missing image_encoder/config.json"):
        MultiViewPipeline.load(str(folder))
    with pytest.raises(SplatforgeError, match="no such folder"):
        MultiViewPipeline.load(str(tmp_path / "nowhere" / "model"))


def test_unet_weights_of_another_config_name_the_mismatch(tiny_pipeline_folder, tmp_path):
    folder = tmp_path / "other"
    shutil.copytree(tiny_pipeline_folder, folder)
    config = json.loads((folder / "unet" / "config.json").read_text())
    config["num_res_blocks"] = 2
    (folder / "unet" / "config.json").write_text(json.dumps(config))
    with pytest.raises(SplatforgeError, match=r"does not match the multi-view U-Net.*missing"):
        MultiViewPipeline.load(str(folder))


def test_bf16_unet_gives_nearly_the_same_views(pipeline, tiny_pipeline_folder):
    low = MultiViewPipeline.load(str(tiny_pipeline_folder), image_size=SIZE, precision="bf16")
    assert next(low.unet.parameters()).dtype == torch.bfloat16
    views = pipeline(_picture(), steps=1, seed=2, progress=False)
    low_views = low(_picture(), steps=1, seed=2, progress=False)
    assert low_views.dtype == np.float32
    difference = np.abs(low_views - views)
    assert 0 < difference.max() < 0.1 and difference.mean() < 0.01
    with pytest.raises(SplatforgeError, match="precision must be one of fp32, bf16"):
        MultiViewPipeline.load(str(tiny_pipeline_folder), precision="fp16")
