"""The default densification strategy of INRIA 3DGS / gsplat: clone, split, prune, reset opacity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch

from .ops import Optimizers, Params, duplicate, remove, reset_opacities, split


@dataclass
class DefaultStrategy:
    """Adaptive density control with gsplat 1.5.3's documented defaults.

    Every `refine_every` steps between `refine_start_iter` and `refine_stop_iter`, Gaussians whose
    mean screen-space gradient exceeds `grow_grad2d` are cloned when small (max scale <=
    `grow_scale3d` x scene scale) and split in two when large; then Gaussians with opacity below
    `prune_opa` (and, after the first reset, larger than `prune_scale3d` x scene scale, or whose
    screen radius exceeds `prune_scale2d` of the image while 2D refinement runs) are removed. Every
    `reset_every` steps before `refine_stop_iter` opacities are clamped to 2 x `prune_opa`. (gsplat
    1.5.3 writes that test as `step % reset_every == 0 & step > 0`, which Python reads as
    `... == (0 & step) > 0`, so its reset never runs; this one does.) Growth stops at `cap_max`
    Gaussians: when a refinement would pass it, only the candidates with the largest gradients grow.

    A trainer whose schedule is fitted to a time budget passes a `plan` (`train.schedule.StepPlan`)
    to `step_post_backward`, which then decides what the step numbers above would.
    """

    prune_opa: float = 0.005  # prune Gaussians with opacity below this
    grow_grad2d: float = 0.0002  # grow Gaussians whose mean image-plane gradient is above this
    grow_scale3d: float = 0.01  # below this max scale (x scene scale) grow by cloning, above by splitting
    grow_scale2d: float = 0.05  # split Gaussians whose screen radius (x image size) is above this
    prune_scale3d: float = 0.1  # prune Gaussians larger than this (x scene scale), after the first reset
    prune_scale2d: float = 0.15  # prune Gaussians whose screen radius (x image size) is above this
    refine_scale2d_stop_iter: int = 0  # use the 2D scale rules until this step (0: never)
    refine_start_iter: int = 500  # first step that refines
    refine_stop_iter: int = 15_000  # refine before this step only
    reset_every: int = 3000  # clamp opacities every this many steps
    refine_every: int = 100  # refine every this many steps
    pause_refine_after_reset: int = 0  # no refining for this many steps after a reset
    absgrad: bool = False  # use absolute screen-space gradients (then raise grow_grad2d, e.g. 0.0008)
    cap_max: Optional[int] = None  # grow to at most this many Gaussians (None: no limit)
    # prune by world size relative to the distance from the scene centre beyond scene scale (an angular
    # size there), so a sky or far background is not pruned for being far and therefore large
    prune_scale3d_far: bool = False
    key_for_gradient: str = "means2d"

    def initialize_state(self, scene_scale: float = 1.0, seed: int = 0) -> Dict[str, Any]:
        """`generator` draws the split samples, so a run (and a resumed one) is reproducible."""
        return {"grad2d": None, "count": None, "radii": None, "scene_scale": scene_scale,
                "generator": torch.Generator().manual_seed(seed)}

    def step_pre_backward(self, params: Params, optimizers: Optimizers, state: Dict[str, Any], step: int,
                          info: Dict[str, Any]) -> None:
        """Keep the screen-space gradient that the refinement reads after backward."""
        info[self.key_for_gradient].retain_grad()

    @torch.no_grad()
    def step_post_backward(self, params: Params, optimizers: Optimizers, state: Dict[str, Any], step: int,
                           info: Dict[str, Any], packed: bool = False, plan=None) -> Dict[str, int]:
        """Accumulate statistics, and refine or reset when the step (or the `plan`) says so; returns
        the counts."""
        counts = {"duplicated": 0, "split": 0, "pruned": 0, "reset": 0}
        if plan is None:
            if step >= self.refine_stop_iter:
                return counts
            refine = (step > self.refine_start_iter and step % self.refine_every == 0
                      and step % self.reset_every >= self.pause_refine_after_reset)
            reset = step > 0 and step % self.reset_every == 0
            prune_large, scale2d = step > self.reset_every, step < self.refine_scale2d_stop_iter
        else:
            if not plan.accumulate:
                return counts
            refine, reset, prune_large, scale2d = plan.refine, plan.reset_opacities, plan.prune_large, plan.scale2d
        self._update_state(params, state, info, packed, scale2d)
        if refine:
            counts.update(self._grow(params, optimizers, state, scale2d))
            counts["pruned"] = self._prune(params, optimizers, state, prune_large, scale2d)
            state["grad2d"].zero_()
            state["count"].zero_()
            if state["radii"] is not None:
                state["radii"].zero_()
        if reset:
            reset_opacities(params, optimizers, value=self.prune_opa * 2.0)
            counts["reset"] = 1
        return counts

    def _update_state(self, params: Params, state: Dict[str, Any], info: Dict[str, Any], packed: bool,
                      scale2d: bool) -> None:
        means2d = info[self.key_for_gradient]
        grads = means2d.absgrad if self.absgrad else means2d.grad
        if grads is None:
            raise RuntimeError(f"{self.key_for_gradient} has no gradient: call step_pre_backward before backward"
                               + (" and render with absgrad=True" if self.absgrad else ""))
        grads = grads.clone()
        # to normalized device coordinates, as gsplat, so grow_grad2d means the same thing
        grads[..., 0] *= info["width"] / 2.0 * info["n_cameras"]
        grads[..., 1] *= info["height"] / 2.0 * info["n_cameras"]
        n = params["means"].shape[0]
        device = grads.device
        if state["grad2d"] is None:
            state["grad2d"] = torch.zeros(n, device=device)
            state["count"] = torch.zeros(n, device=device)
        if scale2d and state["radii"] is None:
            state["radii"] = torch.zeros(n, device=device)
        if packed:
            ids = info["gaussian_ids"]
            radii = info["radii"].max(dim=-1).values
        else:
            visible = (info["radii"] > 0).all(dim=-1)  # [..., C, N]
            ids = visible.nonzero()[:, -1]
            grads = grads[visible]
            radii = info["radii"][visible].max(dim=-1).values
        state["grad2d"].index_add_(0, ids, grads.norm(dim=-1))
        state["count"].index_add_(0, ids, torch.ones_like(ids, dtype=torch.float32))
        if state["radii"] is not None:
            state["radii"][ids] = torch.maximum(state["radii"][ids],
                                                radii / float(max(info["width"], info["height"])))

    def _grow(self, params: Params, optimizers: Optimizers, state: Dict[str, Any], scale2d: bool) -> Dict[str, int]:
        grads = state["grad2d"] / state["count"].clamp_min(1)
        high = grads > self.grow_grad2d
        small = torch.exp(params["scales"]).max(dim=-1).values <= self.grow_scale3d * state["scene_scale"]
        to_clone = high & small
        to_split = high & ~small
        if scale2d and state["radii"] is not None:
            to_split |= state["radii"] > self.grow_scale2d
        if self.cap_max is not None:
            room = max(self.cap_max - int(high.shape[0]), 0)
            grow = to_clone | to_split
            if int(to_clone.sum() + to_split.sum()) > room:  # grow only the `room` strongest
                keep = torch.zeros_like(grow)
                if room:
                    score = torch.where(grow, grads, torch.full_like(grads, -1.0))
                    keep[torch.topk(score, min(room, int(grow.sum()))).indices] = True
                to_clone, to_split = to_clone & keep, to_split & keep
        n_clone, n_split = int(to_clone.sum()), int(to_split.sum())
        if n_clone:
            duplicate(params, optimizers, to_clone, state)
            to_split = torch.cat([to_split, torch.zeros(n_clone, dtype=torch.bool, device=to_split.device)])
        if n_split:
            split(params, optimizers, to_split, state, generator=state.get("generator"))
        return {"duplicated": n_clone, "split": n_split}

    def _prune(self, params: Params, optimizers: Optimizers, state: Dict[str, Any], prune_large: bool,
               scale2d: bool) -> int:
        prune = torch.sigmoid(params["opacities"].flatten()) < self.prune_opa
        if prune_large:
            limit = torch.full_like(params["opacities"].flatten(), self.prune_scale3d * state["scene_scale"])
            if self.prune_scale3d_far:
                limit = limit * (params["means"].norm(dim=-1) / state["scene_scale"]).clamp_min(1.0)
            too_big = torch.exp(params["scales"]).max(dim=-1).values > limit
            if scale2d and state["radii"] is not None:
                too_big |= state["radii"] > self.prune_scale2d
            prune |= too_big
        n_prune = int(prune.sum())
        if n_prune:
            remove(params, optimizers, prune, state)
        return n_prune
