"""Make the parity fixtures of splatforge's multi-view U-Net from the reference code.

Runs LGM's diffusers port of ImageDream (`mvdream/mv_unet.py` of a 3DTopia/LGM checkout) on the
CPU with random weights and writes, under tests/generate/multiview/data/:

- `unet_tiny_step.pt`: a tiny-config U-Net's state dict (float16-rounded, so the file stays small),
  the inputs of ONE denoising step with classifier-free guidance (noisy latents of 4 views + the
  image-prompt view, timesteps, cameras from the reference's `get_camera`, text context, CLIP image
  features, the picture's latent) and the reference's output;
- `unet_released_keys.json`: every parameter name and shape of the U-Net built from the released
  checkpoint's config (ashawkey/imagedream-ipmv-diffusers), built on the meta device (no memory).

The reference needs xformers (CUDA) for its attention and kiui for its cameras; this script puts a
plain-PyTorch `xformers.ops.memory_efficient_attention` (softmax(q k^T / sqrt(d)) v, what that
kernel computes) in its place, and loads `kiui/cam.py` from a kiuikit checkout with stand-ins for
the imports `orbit_camera` does not use (cv2, scipy). The reference also imports diffusers and
einops (`pip install diffusers==0.42.1 einops==0.8.2`).

    python tools/imagedream_reference/make_fixtures.py --lgm /path/to/LGM --kiui /path/to/kiuikit
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parents[2] / "tests" / "generate" / "multiview" / "data"

# the released unet/config.json (ImageDream's sd_v2_base_ipmv.yaml, as the diffusers port keeps it)
RELEASED_CONFIG = dict(image_size=32, in_channels=4, out_channels=4, model_channels=320,
                       attention_resolutions=[4, 2, 1], num_res_blocks=2, channel_mult=[1, 2, 4, 4],
                       num_head_channels=64, transformer_depth=1, context_dim=1024,
                       use_checkpoint=False, camera_dim=16, ip_dim=16)
# small enough for a < 2 MB fixture, yet every kind of block: two levels, attention at both and in
# the middle, a channel change in the skips, image-prompt tokens, camera embedding
TINY_CONFIG = dict(image_size=8, in_channels=4, out_channels=4, model_channels=32,
                   attention_resolutions=[1, 2], num_res_blocks=1, channel_mult=[1, 1],
                   num_head_channels=16, transformer_depth=1, context_dim=16, camera_dim=16, ip_dim=4)


def _attention(q, k, v, attn_bias=None, op=None):  # [B, M, K] each, as xformers takes them
    weights = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1)
    return weights @ v


def _install_stand_ins(kiui_root: Path) -> None:
    ops = types.ModuleType("xformers.ops")
    ops.memory_efficient_attention = _attention
    xformers = types.ModuleType("xformers")
    xformers.ops = ops
    sys.modules.update({"xformers": xformers, "xformers.ops": ops})
    for name in ("cv2", "scipy", "scipy.spatial", "scipy.spatial.transform"):
        try:
            __import__(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
    sys.modules["scipy.spatial.transform"].__dict__.setdefault("Rotation", None)
    kiui = types.ModuleType("kiui")
    kiui.__path__ = [str(kiui_root / "kiui")]  # submodules load from the checkout, __init__ does not run
    kiui_typing = types.ModuleType("kiui.typing")
    kiui_typing.__dict__.update({k: getattr(typing, k) for k in typing.__all__})
    kiui_typing.__dict__.update(Tensor=torch.Tensor, ndarray=np.ndarray)
    kiui_typing.__all__ = list(kiui_typing.__dict__)
    sys.modules.update({"kiui": kiui, "kiui.typing": kiui_typing})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lgm", type=Path, required=True, help="a 3DTopia/LGM checkout")
    parser.add_argument("--kiui", type=Path, required=True, help="an ashawkey/kiuikit checkout")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import diffusers.models.modeling_utils  # noqa: F401 - before the stand-ins, which it would probe
    _install_stand_ins(args.kiui)
    sys.path.insert(0, str(args.lgm))
    from mvdream.mv_unet import MultiViewUNetModel, get_camera

    args.out.mkdir(parents=True, exist_ok=True)
    with torch.device("meta"):
        released = MultiViewUNetModel(**RELEASED_CONFIG)
    keys = {k: list(v.shape) for k, v in released.state_dict().items()}
    (args.out / "unet_released_keys.json").write_text(json.dumps(
        {"config": RELEASED_CONFIG, "parameters": keys}, indent=0) + "\n")

    torch.manual_seed(args.seed)
    unet = MultiViewUNetModel(**TINY_CONFIG).eval()
    # the reference zero-initialises output convolutions; random values make the test see them
    state = {k: (torch.randn_like(v) * 0.2).half() for k, v in unet.state_dict().items()}
    unet.load_state_dict({k: v.float() for k, v in state.items()})

    views, guidance_batch, size, tokens, image_tokens = 4, 2, 8, 7, 3
    frames = views + 1
    camera = get_camera(views, elevation=0, extra_view=True)  # [5, 16]
    inputs = dict(
        x=torch.randn(guidance_batch * frames, 4, size, size),
        timesteps=torch.full((guidance_batch * frames,), 601.0),
        context=torch.randn(guidance_batch, tokens, TINY_CONFIG["context_dim"]
                            ).repeat_interleave(frames, dim=0),
        camera=camera.repeat(guidance_batch, 1),
        num_frames=frames,
        ip=torch.randn(guidance_batch, image_tokens, 1280).repeat_interleave(frames, dim=0),
        ip_img=torch.randn(guidance_batch, 4, size, size),
    )
    with torch.no_grad():
        output = unet(**{k: v.clone() if torch.is_tensor(v) else v for k, v in inputs.items()})
    torch.save({"config": TINY_CONFIG, "state_dict": state, "inputs": inputs, "output": output,
                "camera_elevation_0": camera}, args.out / "unet_tiny_step.pt")
    for path in sorted(args.out.iterdir()):
        print(f"{path}: {path.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
