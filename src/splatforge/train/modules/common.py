"""Pieces the modules share: options parsed into a config dataclass, small MLPs, encodings."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

import torch
from torch import Tensor

from ...errors import SplatforgeError
from .base import OptModule


def module_options(config_cls: type, module_name: str, config) -> Any:
    """`config.module_options[module_name]` (a dict) as a `config_cls` instance: unknown keys, values
    of the wrong type and values its `check()` refuses raise SplatforgeError naming the module."""
    options = (getattr(config, "module_options", None) or {}).get(module_name, {})
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise SplatforgeError(f"module {module_name!r}: options must be a dict of option: value, got {options!r}")
    known = {f.name: f for f in fields(config_cls)}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise SplatforgeError(f"module {module_name!r}: unknown option(s) {', '.join(map(repr, unknown))}; "
                              f"known: {', '.join(known)}")
    defaults = config_cls()
    for key, value in options.items():
        default = getattr(defaults, key)
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, (int, float)):
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                  and (isinstance(default, float) or float(value).is_integer()))
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise SplatforgeError(f"module {module_name!r}: option {key!r} must be a finite "
                                  f"{type(default).__name__}, got {value!r}")
    cfg = config_cls(**{k: (int(v) if isinstance(getattr(defaults, k), int) and not isinstance(v, bool) else v)
                        for k, v in options.items()})
    problem = cfg.check() if hasattr(cfg, "check") else None
    if problem:
        raise SplatforgeError(f"module {module_name!r}: {problem}")
    return cfg


def positive(cfg, *names: str) -> str | None:
    """A message for the first of `names` that is not > 0, or None."""
    for name in names:
        if not getattr(cfg, name) > 0:
            return f"option {name!r} must be > 0, got {getattr(cfg, name)!r}"
    return None


def non_negative(cfg, *names: str) -> str | None:
    for name in names:
        if not getattr(cfg, name) >= 0:
            return f"option {name!r} must be >= 0, got {getattr(cfg, name)!r}"
    return None


def mlp(in_dim: int, width: int, depth: int, out_dim: int, generator: torch.Generator,
        zero_last: bool = False) -> torch.nn.Sequential:
    """`depth` hidden ReLU layers of `width`, then a linear output; initialised from `generator`
    (PyTorch's default uniform scheme) so a module's start is fixed by the trainer's seed."""
    layers: list[torch.nn.Module] = []
    dims = [in_dim] + [width] * depth
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    layers.append(torch.nn.Linear(dims[-1], out_dim))
    net = torch.nn.Sequential(*layers)
    with torch.no_grad():
        for layer in net:
            if isinstance(layer, torch.nn.Linear):
                bound = 1.0 / math.sqrt(layer.in_features)
                layer.weight.copy_((torch.rand(layer.weight.shape, generator=generator) * 2 - 1) * bound)
                layer.bias.copy_((torch.rand(layer.bias.shape, generator=generator) * 2 - 1) * bound)
        if zero_last:
            net[-1].weight.zero_()
            net[-1].bias.zero_()
    return net


def fourier_encoding(x: Tensor, num_freqs: int) -> Tensor:  # [..., D] -> [..., D * (1 + 2 * num_freqs)]
    """x with sin and cos of x * pi * 2^k, k < num_freqs (NeRF's positional encoding)."""
    parts = [x]
    for k in range(num_freqs):
        parts += [torch.sin(x * (math.pi * 2.0 ** k)), torch.cos(x * (math.pi * 2.0 ** k))]
    return torch.cat(parts, dim=-1)


def rotation_6d_to_matrix(d6: Tensor) -> Tensor:  # [..., 6] -> [..., 3, 3]
    """Zhou et al.'s continuous 6D rotation: Gram-Schmidt on the two 3-vectors, rows of the matrix."""
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    return torch.stack((b1, b2, torch.linalg.cross(b1, b2, dim=-1)), dim=-2)


def adam(params: list[Tensor], lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, eps=1e-15, weight_decay=weight_decay)


def num_train_views(capture, module_name: str, minimum: int = 1) -> int:
    n = len(capture.train)
    if n < minimum:
        raise SplatforgeError(f"module {module_name!r} needs at least {minimum} training views, the capture has {n}")
    return n


def check_state(state: dict, module_name: str, keys: tuple[str, ...]) -> None:
    missing = [k for k in keys if k not in state]
    if missing:
        raise SplatforgeError(f"module {module_name!r}: checkpoint state lacks {', '.join(missing)}")


def load_tensor(target: Tensor, value: Any, module_name: str, key: str) -> None:
    """Copy a saved tensor into `target` in place (its optimizer keeps pointing at it)."""
    if not torch.is_tensor(value) or value.shape != target.shape:
        shape = tuple(value.shape) if torch.is_tensor(value) else type(value).__name__
        raise SplatforgeError(f"module {module_name!r}: checkpoint {key!r} is {shape}, expected "
                              f"{tuple(target.shape)} (was it trained on another capture or with other options?)")
    with torch.no_grad():
        target.copy_(value)


def stop_if_not_finite(module) -> None:
    """Raise SplatforgeError naming the module when its parameters hold NaN or inf: checked before
    they are used, so a run stops with the module's name rather than a bare non-finite loss."""
    problem = module.check_finite()
    if problem:
        from ...errors import SplatforgeError

        raise SplatforgeError(f"{problem}; stopping")


class OneTensorModule(OptModule):
    """A module whose learned state is one tensor (the attribute named by `tensor_name`) with one Adam
    (`self.optimizer`): the stepping, parameters and checkpoint state that such modules share."""

    tensor_name = ""

    def optimizer_step(self, step: int) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def parameters(self) -> list[Tensor]:
        return [getattr(self, self.tensor_name)]

    def state_dict(self) -> dict:
        return {self.tensor_name: getattr(self, self.tensor_name).detach().clone(),
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        check_state(state, self.name, (self.tensor_name, "optimizer"))
        load_tensor(getattr(self, self.tensor_name), state[self.tensor_name], self.name, self.tensor_name)
        self.optimizer.load_state_dict(state["optimizer"])
