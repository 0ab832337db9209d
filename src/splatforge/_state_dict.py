"""Comparing a checkpoint's state dict with a model's, for errors that name what differs."""

from __future__ import annotations

from typing import Mapping

import torch


def state_dict_mismatch(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor],
                        shown: int = 5) -> str:
    """'' when `state` has exactly `expected`'s keys and shapes, else what differs, e.g.
    "2 missing keys: a, b; 1 wrong shapes: c: checkpoint (3,), model (4,)" (the first `shown`
    of each kind)."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k}: checkpoint {tuple(state[k].shape)}, model {tuple(v.shape)}"
             for k, v in expected.items() if k in state and state[k].shape != v.shape]
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("wrong shapes", wrong)):
        if items:
            more = f" (+{len(items) - shown} more)" if len(items) > shown else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:shown])}{more}")
    return "; ".join(parts)
