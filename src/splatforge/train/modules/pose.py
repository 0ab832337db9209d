"""`pose`: refine each training image's camera pose (gsplat's CameraOptModule).

Each training image owns 9 numbers, a translation delta (3) and a 6D rotation delta (6, added to
the identity's 6D form), zero at the start so every camera begins exactly where the capture put
it. During training the refined world-to-camera matrix is `delta @ viewmat`: the correction acts
in the camera's own frame. Views outside the training set (evaluation, test views, renders) keep
their poses unchanged.

A capture with a single training image is refused: the scene and that one camera can trade any
rigid motion, so there is nothing to refine against.

`export` writes `poses.json`: every training image's refined and original world-to-camera matrix
in the capture's own (COLMAP) frame, and the correction's size in degrees and scene units.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from . import register_module
from .base import RenderBatch
from .common import (OneTensorModule, stop_if_not_finite, adam, module_options, non_negative, num_train_views, positive,
                     rotation_6d_to_matrix)

IDENTITY_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@dataclass
class PoseConfig:
    lr: float = 3e-4  # Adam learning rate of the deltas (normalized frame: cameras at unit radius)
    reg: float = 1e-6  # weight decay pulling the deltas towards zero, as gsplat's pose_opt_reg
    start_step: int = 0  # deltas stay zero (no step) before this step, so the scene settles first

    def check(self) -> Optional[str]:
        return positive(self, "lr") or non_negative(self, "reg", "start_step")


def delta_transforms(deltas: Tensor) -> Tensor:  # [B, 9] -> [B, 4, 4]
    """The rigid transforms that the 9-number deltas stand for (zero deltas: identity)."""
    identity = torch.tensor(IDENTITY_6D, dtype=deltas.dtype)
    transform = torch.eye(4, dtype=deltas.dtype).repeat(deltas.shape[0], 1, 1)
    transform[:, :3, :3] = rotation_6d_to_matrix(deltas[:, 3:] + identity)
    transform[:, :3, 3] = deltas[:, :3]
    return transform


def pose_error(estimated: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per camera, rotation error (degrees) and camera-centre distance between world-to-camera
    matrices [C, 4, 4]."""
    rel = estimated[:, :3, :3] @ np.transpose(true[:, :3, :3], (0, 2, 1))
    cos = np.clip((np.trace(rel, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    centers = lambda v: -np.einsum("cji,cj->ci", v[:, :3, :3], v[:, :3, 3])  # noqa: E731
    return np.degrees(np.arccos(cos)), np.linalg.norm(centers(estimated) - centers(true), axis=1)


def aligned_pose_error(estimated: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`pose_error` after the similarity transform (Umeyama) that best maps the estimated camera
    centres onto the true ones: refined poses are only defined up to the scene's own rigid motion
    and scale, so this is the error that pose refinement can remove (as in ATE after alignment)."""
    centers = lambda v: -np.einsum("cji,cj->ci", v[:, :3, :3], v[:, :3, 3])  # noqa: E731
    src, dst = centers(estimated), centers(true)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    cov = (dst - mu_d).T @ (src - mu_s) / len(src)
    u, d, vt = np.linalg.svd(cov)
    fix = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ fix @ vt
    scale = np.trace(np.diag(d) @ fix) / ((src - mu_s) ** 2).sum(1).mean()
    shift = mu_d - scale * rot @ mu_s
    aligned = np.repeat(np.eye(4)[None], len(estimated), axis=0)
    aligned[:, :3, :3] = estimated[:, :3, :3] @ rot.T  # world rotation applied to each camera
    new_centers = scale * src @ rot.T + shift
    aligned[:, :3, 3] = -np.einsum("cij,cj->ci", aligned[:, :3, :3], new_centers)
    return pose_error(aligned, true)


@register_module
class PoseModule(OneTensorModule):
    tensor_name = "deltas"
    name = "pose"

    def setup(self, capture, config) -> None:
        self.cfg = module_options(PoseConfig, self.name, config)
        n = num_train_views(capture, self.name, minimum=2)
        self.capture = capture
        self.deltas = torch.nn.Parameter(torch.zeros(n, 9))
        self.optimizer = adam([self.deltas], self.cfg.lr * math.sqrt(max(1, config.batch_size)), self.cfg.reg)
        self.names = [v.name for v in capture.train]
        self.original = torch.from_numpy(np.stack([v.viewmat for v in capture.train]))  # float64

    def before_render(self, batch: RenderBatch, step: int) -> RenderBatch:
        if not batch.training or batch.view_ids is None:
            return batch
        stop_if_not_finite(self)
        batch.viewmats = delta_transforms(self.deltas[batch.view_ids]) @ batch.viewmats
        return batch

    def optimizer_step(self, step: int) -> None:
        if step >= self.cfg.start_step:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def refined_viewmats(self) -> Tensor:  # [n, 4, 4] float64, normalized frame
        return delta_transforms(self.deltas.detach().double()) @ self.original

    def state_dict(self) -> dict:
        return {**super().state_dict(), "names": list(self.names)}

    def export(self, out_dir: Path) -> dict[str, Path]:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        norm = self.capture.normalization
        scale = float(np.cbrt(np.linalg.det(norm[:3, :3])))
        unscale = np.diag([1.0 / scale, 1.0 / scale, 1.0 / scale, 1.0])
        to_world = lambda v: unscale @ v @ norm  # noqa: E731 - inverse of load_capture's mapping
        refined = self.refined_viewmats().numpy()
        original = self.original.numpy()
        rot_deg, shift = pose_error(refined, original)
        cameras = [{"name": name, "viewmat": to_world(r).tolist(), "original_viewmat": to_world(o).tolist(),
                    "rotation_change_degrees": float(d), "center_shift": float(s) / scale}
                   for name, r, o, d, s in zip(self.names, refined, original, rot_deg, shift)]
        path = out_dir / "poses.json"
        path.write_text(json.dumps({"convention": "world-to-camera 4x4, OpenCV axes, the capture's frame",
                                    "cameras": cameras}, indent=2))
        return {"poses": path}
