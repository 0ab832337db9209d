"""Where ImageDream's weights come from: a local folder in the diffusers layout, or a Hugging Face
repo id found in the local Hugging Face cache only (nothing is downloaded at run time); every way
they can be missing or wrong is a `SplatforgeError` that says what to do."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from splatforge._state_dict import state_dict_mismatch
from splatforge.errors import SplatforgeError

from .unet import MultiViewUNet, UNetConfig

DEFAULT_MODEL = "ashawkey/imagedream-ipmv-diffusers"  # LGM's choice
# the pipeline's parts, one sub-folder each, with the file each must hold
COMPONENTS = {
    "unet": "config.json",
    "vae": "config.json",
    "tokenizer": "tokenizer_config.json",
    "text_encoder": "config.json",
    "feature_extractor": "preprocessor_config.json",
    "image_encoder": "config.json",
    "scheduler": "scheduler_config.json",
}
UNET_WEIGHTS = "diffusion_pytorch_model.safetensors"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
INSTALL_HINT = "pip install 'splatforge[generate]'"


def _download_hint(repo_id: str) -> str:
    return (f"download them once, where there is network access, with `hf download {repo_id}` "
            f"(`huggingface-cli download {repo_id}` with huggingface_hub < 1.0), which fills the "
            f"Hugging Face cache (HF_HOME; copy its hub/ folder to this machine if need be), or "
            f"pass the folder of a diffusers-layout copy")


def resolve_model_folder(model: str | Path | None) -> Path:
    """The folder of the pipeline's parts: `model` itself when it is a folder, else the snapshot
    of Hugging Face repo `model` in the local cache (default: LGM's ImageDream)."""
    model = DEFAULT_MODEL if model is None else model
    path = Path(model).expanduser()
    if path.exists() or not _REPO_ID.match(str(model)):
        if not path.is_dir():
            raise SplatforgeError(f"multi-view model {model}: no such folder, and not a Hugging "
                                  f"Face repo id (owner/name)")
        folder = path
        where = f"{folder}"
        hint = f"give a folder in the diffusers layout, e.g. a copy of {DEFAULT_MODEL}"
    else:
        try:
            from huggingface_hub import constants, snapshot_download
            from huggingface_hub.errors import LocalEntryNotFoundError
        except ImportError as err:
            raise SplatforgeError(f"the multi-view stage needs huggingface_hub, diffusers and "
                                  f"transformers: {INSTALL_HINT}") from err
        try:
            folder = Path(snapshot_download(str(model), local_files_only=True))
        except (LocalEntryNotFoundError, OSError, ValueError) as err:
            raise SplatforgeError(
                f"the ImageDream weights {model} are not in the Hugging Face cache "
                f"({constants.HF_HUB_CACHE}) and splatforge never downloads at run time: "
                f"{_download_hint(str(model))}") from err
        where = f"the cached snapshot of {model} ({folder})"
        hint = _download_hint(str(model))
    missing = [f"{part}/{name}" for part, name in COMPONENTS.items()
               if not (folder / part / name).is_file()]
    if not (folder / "unet" / UNET_WEIGHTS).is_file():
        missing.append(f"unet/{UNET_WEIGHTS}")
    if missing:
        raise SplatforgeError(f"{where} is not a complete ImageDream pipeline: missing "
                              f"{', '.join(missing)}; {hint}")
    return folder


def load_unet(folder: Path, device: str | torch.device = "cpu") -> MultiViewUNet:
    """The multi-view U-Net of a diffusers-layout folder, its weights loaded strictly (float32)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config = UNetConfig.from_json(folder / "unet" / "config.json")
    path = folder / "unet" / UNET_WEIGHTS
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise SplatforgeError(f"{path} is not a readable safetensors file: {err}") from err
    with torch.device("meta"):
        unet = MultiViewUNet(config)
    mismatch = state_dict_mismatch(unet.state_dict(), state)
    if mismatch:
        raise SplatforgeError(f"{path} does not match the multi-view U-Net of "
                              f"{folder / 'unet' / 'config.json'}: {mismatch}")
    unet.load_state_dict({k: v.to(device, torch.float32) for k, v in state.items()},
                         strict=True, assign=True)
    return unet.eval()
