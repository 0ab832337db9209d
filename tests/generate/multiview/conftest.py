"""A tiny random ImageDream pipeline in the diffusers folder layout, made here (no weights exist
offline): every part real (diffusers' VAE and DDIM, transformers' CLIP encoders, tokenizer and
image processor, our U-Net), only small."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

TINY_UNET = dict(in_channels=4, out_channels=4, model_channels=32, channel_mult=[1, 1],
                 num_res_blocks=1, attention_resolutions=[2], num_head_channels=16,
                 transformer_depth=1, context_dim=16, camera_dim=16, ip_dim=4,
                 image_embedding_dim=32, use_checkpoint=False, image_size=32)


def make_tiny_pipeline_folder(root: Path, seed: int = 0) -> Path:
    from diffusers import AutoencoderKL, DDIMScheduler
    from safetensors.torch import save_file
    from transformers import (CLIPImageProcessorPil, CLIPTextConfig, CLIPTextModel, CLIPTokenizer,
                              CLIPVisionConfig, CLIPVisionModel)

    from splatforge.generate.multiview.unet import MultiViewUNet, UNetConfig

    torch.manual_seed(seed)
    (root / "unet").mkdir(parents=True)
    (root / "unet" / "config.json").write_text(json.dumps(
        {"_class_name": "MultiViewUNetModel", **TINY_UNET}))
    unet = MultiViewUNet(UNetConfig.from_json(root / "unet" / "config.json"))
    save_file(unet.state_dict(), str(root / "unet" / "diffusion_pytorch_model.safetensors"))

    AutoencoderKL(block_out_channels=(8, 8, 8, 8), norm_num_groups=4, layers_per_block=1,
                  down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                  latent_channels=4, sample_size=256).save_pretrained(root / "vae")
    DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                  steps_offset=1, clip_sample=False, set_alpha_to_one=False
                  ).save_pretrained(root / "scheduler")

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        vocab[letter], vocab[letter + "</w>"] = len(vocab), len(vocab) + 1
    words = root / "words"
    words.mkdir()
    (words / "vocab.json").write_text(json.dumps(vocab))
    (words / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(words / "vocab.json"), str(words / "merges.txt"), model_max_length=8
                  ).save_pretrained(root / "tokenizer")
    CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                                 num_hidden_layers=1, num_attention_heads=2,
                                 max_position_embeddings=8)).save_pretrained(root / "text_encoder")
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
                          ).save_pretrained(root / "feature_extractor")
    CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                     num_attention_heads=2, image_size=32, patch_size=16)
                    ).save_pretrained(root / "image_encoder")
    return root


@pytest.fixture(scope="session")
def tiny_pipeline_folder(tmp_path_factory) -> Path:
    return make_tiny_pipeline_folder(tmp_path_factory.mktemp("imagedream_tiny"))
