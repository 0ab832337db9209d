"""Captures of the demo scene with one known defect each, for the modules' tests and benchmark
(benchmarks/modules.py imports this file from here; it is test code, not part of the library).

Each function takes a clean demo capture (`load_demo`) and returns a copy in which only the
training views (or, for the background, every photo) carry the defect the matching module is
meant to undo; the held-out views stay true, so their PSNR tells whether a module helped.

- `with_pose_noise`: each training camera turned by `rotation_degrees` about a random axis and
  moved by `translation` (normalized frame: cameras at unit radius) in a random direction.
- `with_exposure_changes`: each training photo scaled in linear RGB by a random exposure gain and
  random white-balance gains (log-normal, geometric mean 1 over the photos, so the true
  appearance is their average).
- `with_motion_blur`: a third of the training photos re-rendered by the demo's ray caster as the
  average of renders along a short camera rotation (camera shake during the exposure).
- `with_background`: every photo re-rendered by the ray caster with a coloured background.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from splatforge.capture import Capture, load_capture
from splatforge.demo.capture import demo_cameras, make_demo_capture
from splatforge.demo.raycast import linear_to_srgb, pack_scene, render_view, srgb_to_linear
from splatforge.demo.scene import make_scene
from splatforge.train.trainer import TrainConfig, Trainer


def load_demo(root: str | Path, num_views: int, size: int, num_points: int = 1500) -> Capture:
    """The demo capture of scene seed 0 (the defect functions re-render that scene)."""
    make_demo_capture(root, num_views=num_views, width=size, height=size, seed=0, num_points=num_points)
    return load_capture(root)


def _view_index(name: str) -> int:
    return int(Path(name).stem.split("_")[-1])


def _world_cameras(capture: Capture) -> tuple[np.ndarray, np.ndarray, int, int, int]:
    """The demo's world-frame cameras, its size and seed, for re-rendering a capture's photos."""
    h, w = capture.train[0].image.shape[:2]
    count = len(capture.train) + len(capture.test)
    scene = make_scene(0)
    viewmats, ks = demo_cameras(count, w, h, scene.look_at)
    return viewmats, ks, w, h, count


def _random_rotation(rng: np.random.Generator, degrees: float) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = math.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def with_pose_noise(capture: Capture, rotation_degrees: float = 1.5, translation: float = 0.03,
                    seed: int = 0) -> Capture:
    rng = np.random.default_rng([seed, 11])
    train = []
    for view in capture.train:
        noise = np.eye(4)
        noise[:3, :3] = _random_rotation(rng, rotation_degrees)
        direction = rng.normal(size=3)
        noise[:3, 3] = translation * direction / np.linalg.norm(direction)
        train.append(replace(view, viewmat=noise @ view.viewmat))
    return replace(capture, train=train)


def with_exposure_changes(capture: Capture, exposure_sigma: float = 0.5, white_balance_sigma: float = 0.2,
                          seed: int = 0) -> Capture:
    rng = np.random.default_rng([seed, 12])
    n = len(capture.train)
    log_gains = rng.normal(0.0, exposure_sigma, size=(n, 1)) + rng.normal(0.0, white_balance_sigma, size=(n, 3))
    log_gains -= log_gains.mean(axis=0, keepdims=True)  # geometric mean 1: the truth is the average look
    train = [replace(view, image=linear_to_srgb(srgb_to_linear(view.image) * np.exp(g)).astype(np.float32))
             for view, g in zip(capture.train, log_gains)]
    return replace(capture, train=train)


def _shake(viewmat: np.ndarray, axis: np.ndarray, degrees: float) -> np.ndarray:
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = math.radians(degrees)
    rot = np.eye(4)
    rot[:3, :3] = np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k
    return rot @ viewmat


def with_motion_blur(capture: Capture, fraction: float = 1 / 3, shake_degrees: float = 8.0, samples: int = 9,
                     seed: int = 0) -> tuple[Capture, list[str]]:
    """The capture with `fraction` of its training photos blurred; also the blurred photos' names."""
    rng = np.random.default_rng([seed, 13])
    viewmats, ks, w, h, _ = _world_cameras(capture)
    packed = pack_scene(make_scene(0))
    chosen = set(rng.choice(len(capture.train), size=max(1, round(fraction * len(capture.train))),
                            replace=False).tolist())
    train, names = [], []
    for i, view in enumerate(capture.train):
        if i not in chosen:
            train.append(view)
            continue
        index = _view_index(view.name)
        angle = rng.uniform(0, 2 * math.pi)
        axis = np.array([math.cos(angle), math.sin(angle), 0.0])  # in the image plane: a streak across it
        linear = np.mean([srgb_to_linear(render_view(packed, _shake(viewmats[index], axis, a), ks[index], w, h, 2,
                                                     seed).image)
                          for a in np.linspace(-shake_degrees / 2, shake_degrees / 2, samples)], axis=0)
        train.append(replace(view, image=linear_to_srgb(linear).astype(np.float32)))
        names.append(view.name)
    return replace(capture, train=train), names


def with_background(capture: Capture, color: tuple[float, float, float] = (0.55, 0.7, 0.9)) -> Capture:
    viewmats, ks, w, h, _ = _world_cameras(capture)
    packed = pack_scene(make_scene(0, background=tuple(color)))
    redo = lambda v: replace(v, image=render_view(packed, viewmats[_view_index(v.name)],  # noqa: E731
                                                  ks[_view_index(v.name)], w, h, 2, 0).image)
    return replace(capture, train=[redo(v) for v in capture.train], test=[redo(v) for v in capture.test])


def evidence_config(steps: int, modules: str = "", module_options: dict | None = None, **overrides) -> TrainConfig:
    """A short run's settings: SH degree 1, no densification (the modules' effect, not the
    strategy's, decides the comparison)."""
    base = dict(max_steps=steps, sh_degree=1, sh_degree_interval=max(1, steps // 3), refine_start_iter=10 * steps,
                refine_stop_iter=10 * steps + 1, seed=0, modules=modules, module_options=module_options or {})
    base.update(overrides)
    return TrainConfig(**base)


def train_and_score(capture: Capture, config: TrainConfig) -> tuple[Trainer, float]:
    """Train for config.max_steps; the held-out views' mean PSNR and the trainer."""
    trainer = Trainer(capture, copy.deepcopy(config))
    while trainer.step < config.max_steps:
        trainer.train_step()
    return trainer, trainer.evaluate()["psnr"]
