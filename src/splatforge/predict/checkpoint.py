"""Loading SHARP weights: a local state dict, or the official checkpoint fetched once into the
torch hub cache; every way a checkpoint can be wrong is a `SplatforgeError` that says what."""

from __future__ import annotations

import os
import sys
import urllib.error
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from splatforge._state_dict import state_dict_mismatch
from splatforge.errors import SplatforgeError

OFFICIAL_CHECKPOINT_URL = "https://ml-site.cdn-apple.com/models/sharp/sharp_2572gikvuh.pt"
LICENCE_NOTICE = (
    "Note: the SHARP model weights (sharp_2572gikvuh.pt) are Apple's, released under the Apple "
    "Machine Learning Research Model License: research use only, no commercial use. See "
    "https://github.com/apple/ml-sharp/blob/main/LICENSE_MODEL."
)
_notice_shown = False


def print_licence_notice() -> None:
    """Print the weights' licence notice to stderr, once per process."""
    global _notice_shown
    if not _notice_shown:
        print(LICENCE_NOTICE, file=sys.stderr)
        _notice_shown = True


def official_checkpoint_path() -> Path:
    """Where the official checkpoint lives in the torch hub cache (it may not exist yet)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / OFFICIAL_CHECKPOINT_URL.rsplit("/", 1)[1]


def download_official_checkpoint(progress: bool = True) -> Path:
    """The official checkpoint's path, downloading it (with a progress bar) if not cached."""
    path = official_checkpoint_path()
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(OFFICIAL_CHECKPOINT_URL, str(path), progress=progress)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        raise SplatforgeError(
            f"cannot download the SHARP checkpoint from {OFFICIAL_CHECKPOINT_URL} ({err}); "
            f"without network access, download it elsewhere and pass the file with "
            f"--checkpoint PATH (checkpoint= in Python), or copy it to {path}") from err
    return path


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict saved with torch.save (weights only: no code is executed)."""
    path = Path(path)
    if not path.is_file():
        raise SplatforgeError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a bad file
        raise SplatforgeError(f"{path} is not a readable PyTorch checkpoint: "
                              f"{str(err).splitlines()[0] if str(err) else type(err).__name__}"
                              ) from err
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise SplatforgeError(f"{path} does not hold a state dict (a mapping of parameter names "
                              f"to tensors); got {type(obj).__name__}")
    return dict(obj)


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], source: str,
                 shown: int = 5, assign: bool = False) -> None:
    """`load_state_dict(strict=True)` with an error listing the first mismatches; `assign`
    makes the checkpoint's tensors the parameters (for a model built on the meta device)."""
    expected = model.state_dict()
    mismatch = state_dict_mismatch(expected, state, shown)
    if mismatch:
        raise SplatforgeError(f"{source} does not match this SHARP network (wrong preset or not "
                              f"a SHARP checkpoint): {mismatch}")
    if assign:
        state = {k: v.to(expected[k].dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=assign)
