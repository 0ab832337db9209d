"""`train_scene`: optimize 3D Gaussians against a capture's training views on the CPU rasterizer.

gsplat's `simple_trainer.py` recipe: Adam per parameter group with gsplat's learning rates (the
means' scaled by the scene and decayed exponentially to 1% over the run), loss 0.8 L1 + 0.2 D-SSIM,
SH degree raised every `sh_degree_interval` steps, a densification strategy's two hooks, and
evaluation (PSNR, SSIM) on the held-out views. Training runs in the capture's normalized frame;
`export_ply` writes the scene in the capture's own frame.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F
import tyro

from ..core.gaussians import Gaussians, rasterization_args
from ..core.metrics import psnr, ssim
from ..errors import SplatforgeError
from ..io.ply import write_ply
from ..raster import rasterization
from ..capture import Capture, View
from .modules import RenderBatch, build_modules
from .schedule import BudgetSchedule, FittedSchedule, StepPlan
from .strategies import DefaultStrategy, MCMCStrategy


@dataclass
class TrainConfig:
    """Training settings with gsplat's defaults (scaled down where a CPU needs it)."""

    # optimizer steps (None: 30,000; with a time budget (RunOptions.max_seconds), as many as the budget
    # affords, with the schedule fitted to them: see splatforge.train.schedule)
    max_steps: Optional[int] = None
    batch_size: int = 1  # training views per step
    sh_degree: int = 3  # final SH degree
    sh_degree_interval: int = 1000  # raise the SH degree by one every this many steps
    ssim_lambda: float = 0.2  # loss = (1 - l) L1 + l (1 - SSIM)
    init_opacity: float = 0.1  # opacity of the initial Gaussians
    init_scale: float = 1.0  # initial scale, times the mean distance to the 3 nearest points
    means_lr: float = 1.6e-4  # times the scene scale, decayed to 1% over max_steps
    scales_lr: float = 5e-3
    quats_lr: float = 1e-3
    opacities_lr: float = 5e-2
    sh0_lr: float = 2.5e-3
    shN_lr: float = 2.5e-3 / 20
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)  # colour behind the Gaussians (RGB, 0-1)
    strategy: Literal["default", "mcmc"] = "default"  # densification: gsplat's default or MCMC
    # the most Gaussians a strategy grows to (None: mcmc 1,000,000, default no limit; in a run fitted to a
    # time budget, gaussians_per_pixel x the training views' pixels)
    cap_max: Optional[int] = None
    gaussians_per_pixel: float = 0.02  # budgeted runs: the Gaussian budget per training pixel (see cap_max)
    fitted: FittedSchedule = field(default_factory=FittedSchedule)  # budgeted runs: where each setting falls
    random_background: bool = False  # train over a random background colour per step, so nothing is explained by it
    # add this many points on a far sphere, coloured from the photos: where a sky and far background
    # (which no SfM point covers) can settle instead of as floaters in front of the cameras
    # (None: SKY_POINTS in runs fitted to a time budget, else 0)
    sky_points: Optional[int] = None
    opacity_reg: float = 0.0  # loss += this x mean opacity (gsplat's MCMC recipe uses 0.01)
    scale_reg: float = 0.0  # loss += this x mean scale (gsplat's MCMC recipe uses 0.01)
    refine_start_iter: Optional[int] = None  # first refining step (default: the strategy's, 500)
    refine_stop_iter: Optional[int] = None  # refine before this step only (default 15,000; mcmc 25,000)
    refine_every: Optional[int] = None  # steps between refinements (default 100)
    reset_every: Optional[int] = None  # default strategy: steps between opacity resets (default 3,000)
    absgrad: bool = False
    antialiased: bool = False
    seed: int = 42
    # rasterizer: the trainer keeps every tensor on the CPU, so auto is cpu (gsplat's CUDA kernels are
    # not used); torch: the dense reference
    backend: Literal["auto", "cpu", "torch"] = "auto"
    modules: str = ""  # optimization modules, comma-separated (see splatforge.train.modules)
    # {module name: {option: value}}; the command line sets it with --module-option MODULE.KEY=VALUE
    module_options: Annotated[dict, tyro.conf.Suppress] = field(default_factory=dict)


SCENE_SCALE = 1.0  # the capture is normalized to unit camera radius
DEFAULT_MAX_STEPS = 30_000  # gsplat's run length, when neither max_steps nor a time budget is given
SKY_RADIUS = 20.0  # sky_points lie on a sphere this far from the cameras' centre (x the cameras' radius)
SKY_POINTS = 4000  # sky_points of a run fitted to a time budget (benchmarks/train_budget.py)


@dataclass
class TrainResult:
    gaussians: Gaussians  # normalized frame, pre-activation
    metrics: dict = field(default_factory=dict)  # test psnr/ssim, count, seconds, steps
    history: list = field(default_factory=list)  # per logged step: step, loss, count, seconds


def _render(params, view_viewmats, view_ks, width, height, sh_degree, cfg: TrainConfig, bg: torch.Tensor):
    return rasterization(
        **rasterization_args(params, sh_degree), viewmats=view_viewmats, Ks=view_ks, width=width, height=height,
        backgrounds=bg.expand(view_viewmats.shape[0], 3) if bg.dim() == 1 else bg,
        packed=False, absgrad=cfg.absgrad, rasterize_mode="antialiased" if cfg.antialiased else "classic",
        backend=cfg.backend,
    )


def render_batch(params, viewmats, ks, width, height, sh_degree, cfg: TrainConfig, bg: torch.Tensor,
                 modules: list, step: int, view_ids=None, names=(), training: bool = True):
    """Render through the modules' hooks: (rgb, alpha, info, batch)."""
    batch = RenderBatch(dict(params.items()), viewmats, ks, bg.expand(viewmats.shape[0], 3), view_ids,
                        list(names), training, extras={"sh_degree": sh_degree})
    for module in modules:
        batch = module.before_render(batch, step)
    rgb, alpha, info = _render(batch.params, batch.viewmats, batch.Ks, width, height, sh_degree, cfg,
                               batch.background)
    for module in modules:
        rgb = module.after_render(batch, rgb, alpha, info, step)
    return rgb, alpha, info, batch


def _initial_gaussians(capture: Capture, cfg: TrainConfig, gen: torch.Generator, sky_points: int = 0) -> Gaussians:
    if len(capture.points) == 0:
        raise SplatforgeError(f"the capture {capture.path} has no points to start from; load it with "
                              "load_capture(..., init='auto' or 'random') (splatforge train: --init)")
    points = torch.from_numpy(capture.points).float()
    colors = torch.from_numpy(capture.colors).float() / 255.0
    if sky_points > 0:
        sky, sky_colors = _sky_points(capture, sky_points, gen)
        points, colors = torch.cat([points, sky]), torch.cat([colors, sky_colors])
    g = Gaussians.from_points(points, colors, sh_degree=cfg.sh_degree, opacity=cfg.init_opacity)
    g.scales = g.scales + math.log(cfg.init_scale)
    g.quats = torch.randn(len(g), 4, generator=gen)
    return g


def _sky_points(capture: Capture, count: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` points spread evenly (a Fibonacci sphere, turned at random) on a sphere of SKY_RADIUS
    around the cameras' centre, each coloured by the first training photo it falls inside: a
    starting place for the sky and far background, which no SfM point covers."""
    i = np.arange(count) + 0.5
    z = 1.0 - 2.0 * i / count
    phi = i * math.pi * (3.0 - math.sqrt(5.0)) + float(torch.rand(1, generator=gen)) * 2 * math.pi
    r = np.sqrt(1.0 - z * z)
    centers = np.stack([np.linalg.inv(v.viewmat)[:3, 3] for v in capture.train])
    points = centers.mean(axis=0) + SKY_RADIUS * np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
    colors = np.full((count, 3), 0.5, dtype=np.float32)
    todo = np.ones(count, dtype=bool)
    for view in capture.train:
        cam = points @ view.viewmat[:3, :3].T + view.viewmat[:3, 3]
        height, width = view.image.shape[:2]
        z_cam = np.where(cam[:, 2] > 1e-6, cam[:, 2], 1.0)
        u = view.K[0, 0] * cam[:, 0] / z_cam + view.K[0, 2]
        v = view.K[1, 1] * cam[:, 1] / z_cam + view.K[1, 2]
        hit = todo & (cam[:, 2] > 1e-6) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
        colors[hit] = view.image[v[hit].astype(int), u[hit].astype(int)]
        todo &= ~hit
    return torch.from_numpy(points).float(), torch.from_numpy(colors).float()


def _stack(views: list[View]):
    return (torch.from_numpy(np.stack([v.viewmat for v in views])).float(),
            torch.from_numpy(np.stack([v.K for v in views])).float(),
            torch.from_numpy(np.stack([v.image for v in views])))


@torch.no_grad()
def evaluate(params, views: list[View], cfg: TrainConfig, sh_degree: int,
             on_view: Optional[Callable[[View, torch.Tensor, torch.Tensor], None]] = None,
             modules: tuple = (), step: int = 0) -> dict:
    """Mean PSNR and SSIM over `views` (all of one size); `on_view(view, render, target)` sees each
    [H, W, 3] render (clamped to [0, 1]) and its photo. Modules see the views as not training."""
    if not views:
        return {}
    bg = torch.tensor(cfg.background, dtype=torch.float32)
    scores_psnr, scores_ssim = [], []
    for view in views:
        vm, k, target = _stack([view])
        rgb, _, _, _ = render_batch(params, vm, k, target.shape[2], target.shape[1], sh_degree, cfg, bg,
                                    list(modules), step, names=[view.name], training=False)
        rgb = rgb.clamp(0, 1)
        scores_psnr.append(psnr(rgb, target))
        scores_ssim.append(float(ssim(rgb, target)))
        if on_view is not None:
            on_view(view, rgb[0], target[0])
    return {"psnr": float(np.mean(scores_psnr)), "ssim": float(np.mean(scores_ssim))}


def _strategy_for(cfg: TrainConfig, cap: Optional[int] = None, sky_points: int = 0):
    """The strategy the config names, with gsplat's defaults where the config leaves a field None;
    `cap` limits growth when cfg.cap_max does not."""
    schedule = {name: getattr(cfg, name) for name in ("refine_start_iter", "refine_stop_iter", "refine_every")
                if getattr(cfg, name) is not None}
    if cfg.strategy == "default":
        if cfg.reset_every is not None:
            schedule["reset_every"] = cfg.reset_every
        strategy = DefaultStrategy(absgrad=cfg.absgrad, cap_max=cfg.cap_max or cap,
                                   prune_scale3d_far=sky_points > 0, **schedule)
        return strategy, strategy.initialize_state(scene_scale=SCENE_SCALE, seed=cfg.seed)
    if cfg.strategy == "mcmc":
        strategy = MCMCStrategy(cap_max=cfg.cap_max or cap or 1_000_000, **schedule)
        return strategy, strategy.initialize_state(seed=cfg.seed)
    raise SplatforgeError(f"strategy must be 'default' or 'mcmc', got {cfg.strategy!r}")


def _pack_state(value: Any) -> Any:
    """A strategy state with its torch.Generators turned into their byte states (picklable)."""
    if isinstance(value, torch.Generator):
        return {"__generator__": value.get_state()}
    if isinstance(value, dict):
        return {k: _pack_state(v) for k, v in value.items()}
    return value.clone() if torch.is_tensor(value) else value


def _unpack_state(value: Any) -> Any:
    if isinstance(value, dict) and "__generator__" in value:
        gen = torch.Generator()
        gen.set_state(value["__generator__"])
        return gen
    if isinstance(value, dict):
        return {k: _unpack_state(v) for k, v in value.items()}
    return value


class Trainer:
    """One training run's state (parameters, optimizers, strategy, random streams, step) and the
    step that advances it. `state_dict()` / `load_state_dict()` capture all of it, so a run
    resumed from a checkpoint takes exactly the steps the uninterrupted run would have taken.

    With `budget_seconds` and no `config.max_steps`, the schedule is fitted to the budget
    (`schedule.BudgetSchedule`, timed by `clock`): every step-based setting follows the run's
    progress in time, and `finished()` says when the budget is used up. Otherwise the run has
    max_steps steps (30,000 when None) and gsplat's step-numbered schedule."""

    def __init__(self, capture: Capture, config: Optional[TrainConfig] = None, budget_seconds: Optional[float] = None,
                 clock: Optional[Callable[[], float]] = None):
        self.capture = capture
        self.cfg = cfg = config or TrainConfig()
        if not capture.train:
            raise SplatforgeError("the capture has no training views")
        self.budget_seconds, self.clock = budget_seconds, clock
        self.schedule = self._make_schedule()
        self.plan: Optional[StepPlan] = None  # the current step's, in a budgeted run
        pixels = sum(v.image.shape[0] * v.image.shape[1] for v in capture.train)
        cap = int(cfg.gaussians_per_pixel * pixels) if self.schedule is not None else None
        sky_points = cfg.sky_points if cfg.sky_points is not None else SKY_POINTS if self.schedule is not None else 0
        self.strategy, self.strategy_state = _strategy_for(cfg, cap, sky_points)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        init = _initial_gaussians(capture, cfg, self.generator, sky_points)
        self.params = torch.nn.ParameterDict({k: torch.nn.Parameter(v) for k, v in init.as_dict().items()})
        self._build_optimizers()
        self.step = 0
        self.history: list[dict] = []
        if len({v.image.shape for v in capture.train}) == 1:
            self.viewmats, self.ks, self.images = _stack(capture.train)
        else:  # phone captures mix portrait and landscape photos: one view a step, at its own size
            if cfg.batch_size != 1:
                raise SplatforgeError(f"the capture's photos differ in size; train them with batch_size 1, "
                                      f"not {cfg.batch_size}")
            self.viewmats, self.ks, _ = _stack([replace(v, image=v.image[:1, :1]) for v in capture.train])
            self.images = [torch.from_numpy(v.image) for v in capture.train]
        self.background = torch.tensor(cfg.background, dtype=torch.float32)
        self.modules = build_modules(cfg.modules, capture, cfg)

    def _make_schedule(self) -> Optional[BudgetSchedule]:
        if self.cfg.max_steps is not None or self.budget_seconds is None:
            return None
        return BudgetSchedule(self.budget_seconds, self.cfg.fitted, self.cfg.sh_degree, self.clock)

    @property
    def max_steps(self) -> Optional[int]:
        """The run's length in steps; None when it is fitted to a time budget."""
        if self.schedule is not None:
            return None
        return self.cfg.max_steps if self.cfg.max_steps is not None else DEFAULT_MAX_STEPS

    def finished(self) -> bool:
        """The run has taken its steps, or used its time budget."""
        if self.schedule is not None:
            return self.schedule.finished(self.num_gaussians)
        return self.step >= self.max_steps

    def estimated_steps(self) -> Optional[int]:
        """How many steps the run will take: max_steps, or the budget's current estimate."""
        return self.schedule.estimated_steps if self.schedule is not None else self.max_steps

    def _build_optimizers(self) -> None:
        cfg = self.cfg
        rates = {"means": cfg.means_lr * SCENE_SCALE, "scales": cfg.scales_lr, "quats": cfg.quats_lr,
                 "opacities": cfg.opacities_lr, "sh0": cfg.sh0_lr, "shN": cfg.shN_lr}
        batch = max(1, cfg.batch_size)
        # fused: one kernel per tensor instead of a dozen elementwise passes (CPU and CUDA alike)
        self.optimizers = {k: torch.optim.Adam([self.params[k]], lr=lr * math.sqrt(batch),
                                               eps=1e-15 / math.sqrt(batch), fused=True)
                           for k, lr in rates.items()}

    @property
    def sh_degree(self) -> int:
        if self.schedule is not None:
            return self.plan.sh_degree if self.plan is not None else 0
        return min(self.step // self.cfg.sh_degree_interval, self.cfg.sh_degree)

    @property
    def num_gaussians(self) -> int:
        return int(self.params["means"].shape[0])

    def means_lr(self) -> float:
        """gsplat's schedule: the means' rate decays exponentially to 1% at the end of the run."""
        batch = max(1, self.cfg.batch_size)
        if self.schedule is not None:
            decay = self.plan.means_lr_factor if self.plan is not None else 1.0
        else:
            decay = 0.01 ** (min(self.step, self.max_steps) / max(self.max_steps, 1))
        return self.cfg.means_lr * SCENE_SCALE * math.sqrt(batch) * decay

    def train_step(self) -> dict:
        """One optimizer step on a batch of training views; returns its record (step, loss, psnr,
        count). Raises SplatforgeError, before touching the parameters, if the loss is not finite."""
        cfg = self.cfg
        step = self.step
        plan = self.plan = self.schedule.plan(step, self.num_gaussians) if self.schedule is not None else None
        for group in self.optimizers["means"].param_groups:
            group["lr"] = self.means_lr()
        idx = torch.randint(0, len(self.capture.train), (max(1, cfg.batch_size),), generator=self.generator)
        target = self.images[int(idx[0])][None] if isinstance(self.images, list) else self.images[idx]
        height, width = target.shape[1:3]
        names = [self.capture.train[i].name for i in idx.tolist()]
        # gsplat's random_bkgd: a colour the Gaussians cannot lean on, so they cover everything the photos show
        background = torch.rand(3, generator=self.generator) if cfg.random_background else self.background
        try:
            rgb, _, info, batch = render_batch(self.params, self.viewmats[idx], self.ks[idx], width, height,
                                               self.sh_degree, cfg, background, self.modules, step,
                                               view_ids=idx, names=names)
        except ValueError as exc:  # the rasterizer refuses NaN and inf parameters
            if "non-finite" not in str(exc):
                raise
            raise SplatforgeError(f"training diverged at step {step}: {exc}; stopping") from None
        l1 = F.l1_loss(rgb, target)
        loss = (1 - cfg.ssim_lambda) * l1 + cfg.ssim_lambda * (1.0 - ssim(rgb, target))
        if cfg.opacity_reg > 0:
            loss = loss + cfg.opacity_reg * torch.sigmoid(self.params["opacities"]).mean()
        if cfg.scale_reg > 0:
            loss = loss + cfg.scale_reg * torch.exp(self.params["scales"]).mean()
        for module in self.modules:
            extra = module.loss(batch, step)
            if extra is not None:
                loss = loss + extra
        if not torch.isfinite(loss):
            raise SplatforgeError(f"the loss became {float(loss.detach())} at step {step}; stopping (the parameters "
                                  "are left as they were after the previous step)")
        self.strategy.step_pre_backward(self.params, self.optimizers, self.strategy_state, step, info)
        loss.backward()
        for opt in self.optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        for module in self.modules:
            module.optimizer_step(step)
            problem = module.check_finite()
            if problem:
                raise SplatforgeError(f"{problem} at step {step}; stopping")
        if cfg.strategy == "default":
            self.strategy.step_post_backward(self.params, self.optimizers, self.strategy_state, step, info,
                                             packed=False, plan=plan)
        else:
            self.strategy.step_post_backward(self.params, self.optimizers, self.strategy_state, step, info,
                                             lr=self.optimizers["means"].param_groups[0]["lr"], plan=plan)
        self.step += 1
        if self.schedule is not None:
            self.schedule.step_done(step, self.num_gaussians)
        record = {"step": self.step, "loss": float(loss.detach()), "psnr": psnr(rgb.detach().clamp(0, 1), target),
                  "count": self.num_gaussians}
        self.history.append(record)
        return record

    def evaluate(self, views: Optional[list[View]] = None, on_view=None) -> dict:
        return evaluate(self.params, self.capture.test if views is None else views, self.cfg, self.sh_degree,
                        on_view, self.modules, self.step)

    def gaussians(self) -> Gaussians:
        """The current scene (normalized frame, pre-activation), detached."""
        return Gaussians(**{k: v.detach().clone() for k, v in self.params.items()})

    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "config": asdict(self.cfg),
            "params": {k: v.detach().clone() for k, v in self.params.items()},
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "strategy_state": _pack_state(self.strategy_state),
            "generator": self.generator.get_state(),
            "history": list(self.history),
            "modules": {m.name: m.state_dict() for m in self.modules},
            "schedule": self.schedule.state_dict() if self.schedule is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        for key in ("step", "params", "optimizers", "strategy_state", "generator"):
            if key not in state:
                raise SplatforgeError(f"not a splatforge training checkpoint: no {key!r}")
        self.params = torch.nn.ParameterDict({k: torch.nn.Parameter(v.clone()) for k, v in state["params"].items()})
        self._build_optimizers()
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        self.strategy_state = _unpack_state(state["strategy_state"])
        self.generator.set_state(state["generator"])
        self.step = int(state["step"])
        self.history = list(state.get("history", []))
        self.schedule = self._make_schedule()  # for the config as it is now (a resume may have replaced it)
        if self.schedule is not None and state.get("schedule"):
            self.schedule.load_state_dict(state["schedule"])
        saved_modules = state.get("modules", {})
        for module in self.modules:
            if module.name not in saved_modules:
                raise SplatforgeError(f"the checkpoint has no state for module {module.name!r}")
            module.load_state_dict(saved_modules[module.name])


def train_scene(capture: Capture, config: Optional[TrainConfig] = None,
                callback: Optional[Callable[[int, dict], None]] = None, **overrides: Any) -> TrainResult:
    """Train Gaussians on `capture.train` for max_steps (30,000 when None); evaluate on
    `capture.test` at the end. (`splatforge.train.run.run_training` adds checkpoints, time budgets
    and output files.)"""
    cfg = config or TrainConfig()
    if overrides:
        cfg = replace(cfg, **overrides)
    trainer = Trainer(capture, cfg)
    start = time.perf_counter()
    while not trainer.finished():
        record = trainer.train_step()
        record["seconds"] = time.perf_counter() - start
        if callback is not None:
            callback(trainer.step, record)
    return trainer_result(trainer, time.perf_counter() - start)


def trainer_result(trainer: Trainer, seconds: float, steps: Optional[int] = None) -> TrainResult:
    """The trainer's scene and test figures; `steps` taken in `seconds` (default: all of them)."""
    steps = trainer.step if steps is None else steps
    metrics = {"test": trainer.evaluate(), "count": trainer.num_gaussians, "seconds": seconds,
               "steps": trainer.step, "steps_per_second": steps / seconds if seconds > 0 else None}
    return TrainResult(trainer.gaussians(), metrics, trainer.history)


def to_capture_frame(gaussians: Gaussians, normalization: np.ndarray) -> Gaussians:
    """Map Gaussians from the normalized training frame (x_n = s x_w + t) back to the capture's:
    means scale and shift back, log scales drop log s; rotations and SH are unchanged."""
    scale = float(np.cbrt(np.linalg.det(normalization[:3, :3])))
    shift = torch.from_numpy(normalization[:3, 3]).to(gaussians.means)
    out = gaussians.clone()
    out.means = (gaussians.means - shift) / scale
    out.scales = gaussians.scales - math.log(scale)
    return out


def from_capture_frame(gaussians: Gaussians, normalization: np.ndarray) -> Gaussians:
    """The inverse of `to_capture_frame`: a scene in the capture's frame, in the training frame."""
    scale = float(np.cbrt(np.linalg.det(normalization[:3, :3])))
    shift = torch.from_numpy(normalization[:3, 3]).to(gaussians.means)
    out = gaussians.clone()
    out.means = gaussians.means * scale + shift
    out.scales = gaussians.scales + math.log(scale)
    return out


def export_ply(result: TrainResult, capture: Capture, path: str | Path) -> Path:
    """Write the trained scene as an INRIA PLY in the capture's own frame."""
    write_ply(path, to_capture_frame(result.gaussians, capture.normalization))
    return Path(path)
