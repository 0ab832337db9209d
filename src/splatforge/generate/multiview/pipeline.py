"""ImageDream's multi-view diffusion: one picture of an object -> four views of it at LGM's cameras.

    from splatforge.generate.multiview import MultiViewPipeline
    pipeline = MultiViewPipeline.load()            # ashawkey/imagedream-ipmv-diffusers, from the HF cache
    views = pipeline(image, steps=30, guidance=5)  # [4, 256, 256, 3] float32 in [0, 1]

The picture conditions the U-Net twice: its CLIP image features become image-prompt tokens, and its
VAE latent is denoised alongside as a fifth view. Classifier-free guidance runs the conditioned and
the unconditioned (empty text, zero image features, zero latent) batch together; DDIM steps, as
LGM runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from splatforge.errors import SplatforgeError

from .cameras import view_cameras
from .unet import MultiViewUNet
from .weights import DEFAULT_MODEL, INSTALL_HINT, load_unet, resolve_model_folder

__all__ = ["DEFAULT_MODEL", "MultiViewPipeline"]

NUM_VIEWS = 4
IMAGE_SIZE = 256  # ImageDream's training size: the views' size and the picture's when encoded
ELEVATION = 0.0  # degrees, as LGM asks for
# ImageDream's frame 1 is the picture's own viewpoint; LGM's views start there (infer.py takes
# frames 1, 2, 3, 0): views at azimuth 0, 90, 180, 270 of LGM's cameras
LGM_ORDER = (1, 2, 3, 0)
# the U-Net's arithmetic; bf16 takes ~0.6x the CPU time per step on CPUs with AVX512-BF16/AMX
# (benchmarks/generate_multiview.py) and half the U-Net's memory
UNET_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _import_components() -> dict[str, Any]:
    try:
        from diffusers import AutoencoderKL, DDIMScheduler
        from transformers import CLIPTextModel, CLIPTokenizer, CLIPVisionModel
        try:  # transformers >= 5: the PIL image processor (the default one needs torchvision)
            from transformers import CLIPImageProcessorPil as CLIPImageProcessor
        except ImportError:
            from transformers import CLIPImageProcessor
    except ImportError as err:
        raise SplatforgeError(f"the multi-view stage needs diffusers and transformers "
                              f"({err}): {INSTALL_HINT}") from err
    return dict(vae=AutoencoderKL, scheduler=DDIMScheduler, tokenizer=CLIPTokenizer,
                text_encoder=CLIPTextModel, image_encoder=CLIPVisionModel,
                feature_extractor=CLIPImageProcessor)


class MultiViewPipeline:
    """ImageDream's parts: the multi-view U-Net (ours), the VAE and DDIM scheduler (diffusers),
    the CLIP text and image encoders and their pre-processors (transformers)."""

    def __init__(self, unet: MultiViewUNet, vae, tokenizer, text_encoder, feature_extractor,
                 image_encoder, scheduler, device: str | torch.device = "cpu",
                 image_size: int = IMAGE_SIZE):
        self.unet, self.vae, self.tokenizer, self.text_encoder = unet, vae, tokenizer, text_encoder
        self.feature_extractor, self.image_encoder, self.scheduler = (feature_extractor,
                                                                      image_encoder, scheduler)
        self.device = torch.device(device)
        self.image_size = image_size
        self.latent_size = image_size // 2 ** (len(vae.config.block_out_channels) - 1)
        self._text_context: torch.Tensor | None = None

    @classmethod
    def load(cls, model: str | Path | None = None, *, device: str | torch.device = "cpu",
             image_size: int = IMAGE_SIZE, precision: str = "fp32") -> "MultiViewPipeline":
        """Load from a local diffusers-layout folder, or a Hugging Face repo id looked up only
        in the local Hugging Face cache (default `ashawkey/imagedream-ipmv-diffusers`). Weights
        are used in float32 (the released ones are float16). `image_size`: the views' size;
        ImageDream was trained at 256 (tests use less with tiny random parts). `precision`
        "bf16" keeps the U-Net in bfloat16 (the other parts stay float32)."""
        if precision not in UNET_DTYPES:
            raise SplatforgeError(f"precision must be one of {', '.join(UNET_DTYPES)}, "
                                  f"got {precision!r}")
        folder = resolve_model_folder(model)
        kinds = _import_components()
        parts: dict[str, Any] = {}
        for name, kind in kinds.items():
            path = folder / name
            try:
                if name == "scheduler":
                    # as the reference pipeline: DDIM with steps_offset 1 and no sample clipping
                    parts[name] = kind.from_config(kind.load_config(path), steps_offset=1,
                                                   clip_sample=False)
                elif name in ("tokenizer", "feature_extractor"):
                    parts[name] = kind.from_pretrained(path, local_files_only=True)
                else:
                    parts[name] = kind.from_pretrained(path, local_files_only=True,
                                                       torch_dtype=torch.float32).to(device).eval()
            except (OSError, ValueError, KeyError, TypeError) as err:
                raise SplatforgeError(f"cannot load the {name} of {folder}: "
                                      f"{str(err).splitlines()[0] if str(err) else err!r}") from err
        unet = load_unet(folder, device).to(UNET_DTYPES[precision])
        return cls(unet, device=device, image_size=image_size, **parts)

    def _encode_text(self) -> torch.Tensor:  # [1, T, context_dim]
        """The empty prompt's tokens (LGM gives no text): computed once."""
        if self._text_context is None:
            ids = self.tokenizer("", padding="max_length", max_length=self.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt").input_ids
            self._text_context = self.text_encoder(ids.to(self.device))[0].float()
        return self._text_context

    def _encode_picture(self, image: np.ndarray, generator: torch.Generator
                        ) -> tuple[torch.Tensor, torch.Tensor]:  # [1, N, E], [1, 4, h, w]
        pixels = self.feature_extractor((image * 255).astype(np.uint8), return_tensors="pt")
        features = self.image_encoder(pixels.pixel_values.to(self.device),
                                      output_hidden_states=True).hidden_states[-2]
        picture = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
        picture = F.interpolate(picture.to(self.device) * 2 - 1, (self.image_size,) * 2,
                                mode="bilinear", align_corners=False)
        posterior = self.vae.encode(picture).latent_dist
        latent = posterior.sample(generator=generator) * self.vae.config.scaling_factor
        return features.float(), latent

    @torch.no_grad()
    def __call__(self, image: np.ndarray,  # [H, W, 3] float32 RGB in [0, 1], object on white
                 *, steps: int = 30, guidance: float = 5.0, seed: int = 0, progress: bool = True
                 ) -> np.ndarray:  # [4, S, S, 3] float32 in [0, 1], S = image_size (256)
        """Four views of the object in `image`, at azimuths 0, 90, 180, 270 degrees and
        elevation 0 of LGM's cameras (view 0 is the picture's viewpoint). `steps` DDIM steps,
        classifier-free `guidance` scale (1 turns it off), `seed` for the noise: the same
        arguments give the same views."""
        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3
                and min(image.shape[:2]) > 0):
            raise SplatforgeError(f"the multi-view stage takes an RGB image [H, W, 3]; got "
                                  f"{getattr(image, 'shape', type(image).__name__)}")
        if steps < 1:
            raise SplatforgeError(f"steps must be at least 1; got {steps}")
        image = np.clip(image.astype(np.float32), 0.0, 1.0)
        generator = torch.Generator("cpu").manual_seed(seed)
        frames = NUM_VIEWS + 1
        size = self.latent_size
        noise = torch.randn((frames, self.unet.config.in_channels, size, size), generator=generator)
        latents = noise.to(self.device) * self.scheduler.init_noise_sigma

        features, picture = self._encode_picture(image, generator)
        text = self._encode_text()
        camera = torch.from_numpy(view_cameras(NUM_VIEWS, ELEVATION, extra_view=True)).to(self.device)
        guided = guidance > 1.0
        if guided:  # unconditioned half first, as the reference
            context = torch.cat([text.expand(frames, -1, -1)] * 2)
            features = torch.cat([torch.zeros_like(features).expand(frames, -1, -1),
                                  features.expand(frames, -1, -1)])
            picture = torch.cat([torch.zeros_like(picture), picture])
            camera = torch.cat([camera] * 2)
        else:
            context, features = text.expand(frames, -1, -1), features.expand(frames, -1, -1)

        dtype = next(self.unet.parameters()).dtype
        context, features, picture, camera = (v.to(dtype) for v in (context, features, picture, camera))
        self.scheduler.set_timesteps(steps, device=self.device)
        for t in tqdm(self.scheduler.timesteps, desc="multi-view diffusion", unit="step",
                      disable=not progress, leave=False):
            model_input = torch.cat([latents] * 2) if guided else latents
            model_input = self.scheduler.scale_model_input(model_input, t)
            timesteps = torch.full((model_input.shape[0],), float(t), device=self.device)
            noise_pred = self.unet(model_input.to(dtype), timesteps, context, camera=camera,
                                   num_views=frames, ip=features, ip_img=picture).float()
            if guided:
                uncond, cond = noise_pred.chunk(2)
                noise_pred = uncond + guidance * (cond - uncond)
            latents = self.scheduler.step(noise_pred, t, latents, eta=0.0, return_dict=False)[0]

        # the fifth frame is the picture's own latent: not decoded
        chosen = latents[list(LGM_ORDER)] / self.vae.config.scaling_factor
        views = self.vae.decode(chosen).sample
        views = (views / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().cpu().numpy()
        return np.ascontiguousarray(views, dtype=np.float32)
