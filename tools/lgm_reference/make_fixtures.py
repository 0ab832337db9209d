"""Generate LGM parity fixtures from 3DTopia/LGM's reference code, by hand (not run in CI).

    git clone https://github.com/3DTopia/LGM /tmp/LGM
    git clone https://github.com/ashawkey/kiuikit /tmp/kiuikit     # LGM's camera helpers
    git -C /tmp/kiuikit checkout 3c7ecb2    # kiui 0.2.8 (April 2024), of LGM's time
    .venv/bin/python tools/lgm_reference/make_fixtures.py /tmp/LGM /tmp/kiuikit tests/generate/data

It imports LGM's `core.models.LGM` from the first path and kiui's `cam`/`op` modules from the
second, builds the network with the small "mini" configuration below and seeded random weights,
builds the input exactly as LGM's infer.py does (ImageNet normalisation, then the Plücker rays
of `LGM.prepare_default_rays`), runs `forward_gaussians` in float32 and writes:

    lgm_mini.pt        config, state dict (float16), views [4, 32, 32, 3], network input
                       [1, 4, 9, 32, 32] and Gaussians [1, 1024, 14] (float32)
    lgm_keys.json      preset -> {key: shape} of LGM's state_dict() for its "big" (the
                       released checkpoint), "small" ("lrm") and "tiny" configs

The weights are rounded to float16 before the reference runs, so the stored file is small and
still exactly the model whose output was recorded.

Stubbed imports, all for code paths this script does not run: `diff_gaussian_rasterization`
(LGM's CUDA renderer, imported by core/gs.py), `kiui.lpips` (the training loss; built only when
lambda_lpips > 0, and it is 0 here), `roma` (core/utils.py's training-time camera jitter), `cv2`
(imported by kiui/op.py for image ops) and `scipy.spatial.transform` when missing (kiui/cam.py,
unused by orbit_camera). kiui's package `__init__` (lazy_loader, a config file in $HOME) is
bypassed: `kiui` is made a bare package over the checkout's `kiui/` folder. LGM's
`GaussianRenderer` is replaced by a no-op after import: its constructor allocates a CUDA tensor
and the network forward does not use it. xFormers is absent, so LGM's attention takes its plain
torch path (its own fallback).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch

SEED = 1818
MINI = dict(input_size=32, down_channels=(32, 32, 32), down_attention=(False, False, True),
            mid_attention=True, up_channels=(32, 32), up_attention=(True, False), splat_size=16)
IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)  # infer.py's constants
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)


def _stub(name: str, **attrs) -> None:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module


def import_reference(lgm: Path, kiuikit: Path):
    _stub("diff_gaussian_rasterization", GaussianRasterizationSettings=None, GaussianRasterizer=None)
    _stub("roma")
    _stub("cv2")
    try:
        import scipy.spatial.transform  # noqa: F401
    except ImportError:
        _stub("scipy")
        _stub("scipy.spatial")
        _stub("scipy.spatial.transform", Rotation=None)
    kiui = types.ModuleType("kiui")
    kiui.__path__ = [str(kiuikit / "kiui")]
    sys.modules["kiui"] = kiui
    _stub("kiui.lpips", LPIPS=None)
    sys.path.insert(0, str(lgm))
    import core.models
    from core.options import Options, config_defaults

    core.models.GaussianRenderer = lambda opt: None
    return core.models.LGM, Options, config_defaults


def key_shapes(model: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def main(lgm: Path, kiuikit: Path, out: Path) -> None:
    LGM, Options, config_defaults = import_reference(lgm, kiuikit)
    out.mkdir(parents=True, exist_ok=True)

    keys = {}
    for ours, theirs in (("big", "big"), ("small", "lrm"), ("tiny", "tiny")):
        opt = dataclasses.replace(config_defaults[theirs], lambda_lpips=0.0)
        with torch.device("meta"):
            keys[ours] = key_shapes(LGM(opt))
    (out / "lgm_keys.json").write_text(json.dumps(keys, indent=0) + "\n")

    torch.manual_seed(SEED)
    opt = Options(**MINI, lambda_lpips=0.0)
    model = LGM(opt).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    gen = torch.Generator().manual_seed(SEED)
    # Smooth random views (an object-like blob over white), not white noise.
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    views = []
    for _ in range(4):
        centre = 0.4 * (torch.rand(2, generator=gen) - 0.5)
        blob = torch.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / 0.2)[..., None]
        colour = torch.rand(3, generator=gen)
        views.append(blob * colour + (1 - blob) + 0.05 * torch.rand(32, 32, 3, generator=gen))
    views = torch.stack(views).clamp(0, 1)  # [4, 32, 32, 3]

    images = views.permute(0, 3, 1, 2)
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1)
    rays = model.prepare_default_rays("cpu").float()
    network_input = torch.cat([(images - mean) / std, rays], dim=1)[None]
    with torch.no_grad():
        gaussians = model.forward_gaussians(network_input)

    torch.save({
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in MINI.items()},
        "seed": SEED,
        "state_dict": {k: v.half() for k, v in model.state_dict().items()},
        "views": views.contiguous(),
        "network_input": network_input.contiguous(),
        "gaussians": gaussians.contiguous(),
    }, out / "lgm_mini.pt")
    print(f"wrote {out / 'lgm_mini.pt'} ({(out / 'lgm_mini.pt').stat().st_size:,} bytes) and "
          f"{out / 'lgm_keys.json'}; Gaussians {tuple(gaussians.shape)}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
