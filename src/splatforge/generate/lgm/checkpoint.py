"""Loading LGM weights: a local .safetensors or torch state dict, or the released checkpoint from
the local Hugging Face cache. Every way a checkpoint can be wrong is a `SplatforgeError` that says what,
and a checkpoint of another preset is named as such."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch

from splatforge._state_dict import state_dict_mismatch
from splatforge.errors import SplatforgeError

from .model import LGMNetwork
from .presets import PRESETS, preset_config

RELEASED_REPO = "ashawkey/LGM"
RELEASED_FILE = "model_fp16_fixrot.safetensors"


def released_checkpoint() -> Path:
    """The released checkpoint's path in the local Hugging Face cache. Like the multi-view
    stage's weights it is never downloaded at run time: the error says how to get it."""
    hint = (f"download it once, where there is network access, with `hf download {RELEASED_REPO} "
            f"{RELEASED_FILE}` (`huggingface-cli download ...` with huggingface_hub < 1.0), which fills "
            f"the Hugging Face cache, or pass the file with --checkpoint PATH (checkpoint= in Python)")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as err:
        raise SplatforgeError(f"looking up the LGM weights needs huggingface_hub; {hint}") from err
    try:
        return Path(hf_hub_download(RELEASED_REPO, RELEASED_FILE, local_files_only=True))
    except Exception as err:  # noqa: BLE001 - not cached, a broken cache: both mean "not available"
        raise SplatforgeError(f"the LGM weights {RELEASED_REPO}/{RELEASED_FILE} are not in the Hugging "
                              f"Face cache; {hint}") from err


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file or a torch.save file (weights only, no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise SplatforgeError(f"checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            try:
                from safetensors.torch import load_file
            except ImportError as err:
                raise SplatforgeError(f"reading {path} needs safetensors: pip install "
                                      "'splatforge[generate]'") from err
            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except SplatforgeError:
        raise
    except Exception as err:  # noqa: BLE001 - both readers raise many types for a bad file
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SplatforgeError(f"{path} is not a readable checkpoint: {first}") from err
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise SplatforgeError(f"{path} does not hold a state dict (parameter names -> tensors)")
    return dict(state)


def _shapes(preset: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in LGMNetwork(preset_config(preset)).state_dict().items()}


def _matching_preset(state: Mapping[str, torch.Tensor]) -> str | None:
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    return next((p for p in PRESETS if _shapes(p) == shapes), None)


def load_checkpoint(model: LGMNetwork, preset: str, state: Mapping[str, torch.Tensor], source: str,
                    shown: int = 5) -> None:
    """`load_state_dict(strict=True, assign=True)` (the model may live on the meta device), the
    tensors cast to float32; a mismatch lists the first differing keys and names the preset the
    checkpoint belongs to when it is another of ours."""
    mismatch = state_dict_mismatch(model.state_dict(), state, shown)
    if mismatch:
        other = _matching_preset(state)
        hint = (f"it is a {other!r} checkpoint: pass --preset {other}" if other else
                "it is not an LGM checkpoint of any preset")
        raise SplatforgeError(f"{source} does not match the LGM {preset!r} network ({hint}); {mismatch}")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
