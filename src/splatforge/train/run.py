"""`run_training`: a training run with its files — checkpoints, resume, a wall-time budget,
evaluation stats, test renders, plots and the exported scene.

Output folder (gsplat's layout where gsplat has one):

    OUT/config.json                 the TrainConfig and run options
    OUT/ckpts/ckpt_STEP.pt          full trainer state, written atomically; the newest two are kept
    OUT/stats/val_stepSTEP.json     test PSNR / SSIM (/ LPIPS), Gaussian count, seconds, memory
    OUT/stats/train.json            per step: loss, PSNR of the batch, count, seconds
    OUT/renders/val_stepSTEP_NAME.png   test view: render | ground truth
    OUT/plots/training.png          loss, PSNR and Gaussian count over the steps
    OUT/point_cloud.ply             the final scene, INRIA layout, in the capture's own frame
    OUT/metrics.json                the final figures

A run killed at any moment (even with SIGKILL) loses only the steps since the newest checkpoint:
checkpoints go to a temporary file that is renamed over the final name only once it is complete,
and `resume=True` continues from the newest one that loads. A non-finite loss stops the run with
an error and writes nothing, so the last good checkpoint stays the newest.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..core.fsutil import atomic_write
from ..core.images import save_image
from ..errors import SplatforgeError
from ..io.ply import write_ply
from ..capture import Capture
from .modules import build_modules
from .schedule import FittedSchedule
from .trainer import TrainConfig, Trainer, TrainResult, to_capture_frame

CHECKPOINT_GLOB = "ckpt_*.pt"


@dataclass
class RunOptions:
    """How a run is driven and what it writes (the optimization itself is in TrainConfig)."""

    # wall-time budget for training; when it runs out the run evaluates and exports. Without
    # TrainConfig.max_steps the whole schedule is fitted to it (splatforge.train.schedule)
    max_seconds: Optional[float] = None
    checkpoint_every: int = 1000  # steps between checkpoints (and one at the end)
    checkpoint_seconds: float = 120.0  # also checkpoint when this long has passed since the last one
    keep_checkpoints: int = 2  # how many of the newest checkpoints to keep
    eval_every: int = 0  # steps between evaluations on the test views (0: only at the end)
    resume: bool = False  # continue from the newest checkpoint in the output folder
    progress: bool = True  # show a progress bar
    renders: bool = True  # write test-view renders next to ground truth at each evaluation
    viewer: bool = False  # show training live in a local viser viewer (see `splatforge view`)
    viewer_port: int = 8080
    viewer_every: int = 100  # steps between viewer refreshes


def _peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(data, indent=2, default=float).encode())


def save_checkpoint(trainer: Trainer, folder: Path, keep: int = 2) -> Path:
    """Write the trainer state to folder/ckpt_STEP.pt atomically and drop all but the newest `keep`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ckpt_{trainer.step:07d}.pt"
    state = trainer.state_dict()
    state["train_views"] = [v.name for v in trainer.capture.train]
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    for old in sorted(folder.glob(CHECKPOINT_GLOB))[:-max(keep, 1)]:
        old.unlink(missing_ok=True)
    return path


def newest_checkpoint(folder: Path) -> Optional[tuple[Path, dict]]:
    """The newest checkpoint in `folder` that loads, with its state; None when there is none."""
    for path in sorted(folder.glob(CHECKPOINT_GLOB), reverse=True):
        try:
            return path, torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a damaged file: say so and fall back to the one before
            print(f"skipping unreadable checkpoint {path}: {exc}")
    return None


class LPIPSScorer:
    """LPIPS (AlexNet) when the `lpips` package and its backbone weights are on this machine; it never
    downloads. `reason` says why it is unavailable."""

    def __init__(self) -> None:
        self.model, self.reason = None, None
        if importlib.util.find_spec("lpips") is None or importlib.util.find_spec("torchvision") is None:
            self.reason = "the lpips and torchvision packages are not installed"
            return
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        if not any(hub.glob("alexnet-*.pth")):
            self.reason = f"AlexNet weights are not in {hub} (nothing is downloaded)"
            return
        import lpips

        self.model = lpips.LPIPS(net="alex", verbose=False).eval()

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, target: torch.Tensor) -> float:  # [H, W, 3] in [0, 1]
        to = lambda t: t.permute(2, 0, 1)[None] * 2 - 1  # noqa: E731
        return float(self.model(to(image), to(target)))


def _evaluate_and_save(trainer: Trainer, out: Path, lpips: LPIPSScorer, seconds: float, renders: bool) -> dict:
    lpips_scores = []

    def on_view(view, rgb, target):
        if lpips.model is not None:
            lpips_scores.append(lpips(rgb, target))
        if renders:
            pair = torch.cat([rgb, target], dim=1).numpy()
            save_image(out / "renders" / f"val_step{trainer.step:07d}_{Path(view.name).stem}.png", pair)

    stats = trainer.evaluate(on_view=on_view)
    if lpips_scores:
        stats["lpips"] = float(np.mean(lpips_scores))
    stats.update(step=trainer.step, num_gaussians=trainer.num_gaussians, num_views=len(trainer.capture.test),
                 elapsed_seconds=seconds, steps_per_second=trainer.step / seconds if seconds > 0 else None,
                 peak_memory_mb=_peak_memory_mb())
    _write_json(out / "stats" / f"val_step{trainer.step:07d}.json", stats)
    return stats


def plot_history(history: list[dict], evaluations: list[dict], path: Path) -> Path:
    """Loss, PSNR (training batch and test views) and Gaussian count over the steps, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([r["step"] for r in history])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    if len(steps):
        smooth = lambda v: np.convolve(v, np.ones(min(25, len(v))) / min(25, len(v)), mode="valid")  # noqa: E731
        loss = np.array([r["loss"] for r in history])
        axes[0].plot(steps, loss, color="0.8", lw=0.6)
        axes[0].plot(steps[len(steps) - len(smooth(loss)):], smooth(loss), color="C0")
        train_psnr = np.array([r["psnr"] for r in history])
        axes[1].plot(steps[len(steps) - len(smooth(train_psnr)):], smooth(train_psnr), color="C0", label="train batch")
        axes[2].plot(steps, [r["count"] for r in history], color="C2")
    if evaluations:
        axes[1].plot([e["step"] for e in evaluations], [e["psnr"] for e in evaluations], "o-", color="C3",
                     label="test views")
    axes[0].set(title="loss (0.8 L1 + 0.2 D-SSIM)", xlabel="step", yscale="log")
    axes[1].set(title="PSNR (dB)", xlabel="step")
    axes[1].legend(loc="lower right")
    axes[2].set(title="Gaussians", xlabel="step")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _resume(trainer: Trainer, out: Path, cfg: TrainConfig) -> None:
    found = newest_checkpoint(out / "ckpts")
    if found is None:
        print(f"no checkpoint in {out / 'ckpts'}; starting from step 0")
        return
    path, state = found
    names = [v.name for v in trainer.capture.train]
    if state.get("train_views") not in (None, names):
        raise SplatforgeError(f"{path} was trained on other views than this capture's; "
                              "resume with the capture and test split it was made with")
    fitted = state["config"].get("fitted")
    known = {f.name for f in fields(TrainConfig)}  # checkpoints of older versions may name retired settings
    config = {k: v for k, v in state["config"].items() if k in known}
    saved = TrainConfig(**{**config, "background": tuple(config["background"]),
                           **({"fitted": FittedSchedule(**fitted)} if isinstance(fitted, dict) else {})})
    changed = [k for k, v in asdict(saved).items() if k != "max_steps" and asdict(cfg)[k] != v]
    if changed:
        print(f"resuming with the checkpoint's settings for {', '.join(changed)}")
    trainer.cfg = replace(saved, max_steps=cfg.max_steps)
    trainer.modules = build_modules(trainer.cfg.modules, trainer.capture, trainer.cfg)
    trainer.load_state_dict(state)
    print(f"resumed from {path} at step {trainer.step}")


def run_training(capture: Capture, out_dir: str | os.PathLike, config: Optional[TrainConfig] = None,
                 options: Optional[RunOptions] = None,
                 on_step: Optional[Callable[[Trainer, dict], None]] = None,
                 clock: Optional[Callable[[], float]] = None) -> TrainResult:
    """Train with checkpoints and outputs in `out_dir` (see the module doc); returns the result.
    `on_step(trainer, record)` is called after every step (a live viewer, a test's probe); `clock`
    (default time.perf_counter) times the budget."""
    cfg = config or TrainConfig()
    opts = options or RunOptions()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not opts.resume and any((out / "ckpts").glob(CHECKPOINT_GLOB)):
        raise SplatforgeError(f"{out} holds checkpoints of an earlier run: resume it (--resume) or choose "
                              "another output folder")
    trainer = Trainer(capture, cfg, budget_seconds=opts.max_seconds, clock=clock)
    if opts.resume:
        _resume(trainer, out, cfg)
    cfg = trainer.cfg
    _write_json(out / "config.json", {"train": asdict(cfg), "run": asdict(opts)})
    lpips = LPIPSScorer()
    if lpips.reason:
        print(f"LPIPS skipped: {lpips.reason}")
    evaluations = []
    if opts.resume and (out / "stats").exists():
        evaluations = [json.loads(p.read_text()) for p in sorted((out / "stats").glob("val_step*.json"))]
        evaluations = [e for e in evaluations if e.get("step", 0) <= trainer.step]

    live = None
    if opts.viewer:
        from ..view.live import LiveViewer

        live = LiveViewer(port=opts.viewer_port, every=opts.viewer_every)
        print(f"live viewer: {live.url}")

    from tqdm import tqdm

    bar = tqdm(total=trainer.estimated_steps(), initial=trainer.step, disable=not opts.progress, unit="step",
               dynamic_ncols=True)
    run_clock = clock or time.perf_counter  # times the budget (and the fitted schedule)
    start = run_clock()
    first_step = trainer.step
    last_checkpoint = time.perf_counter()  # checkpoints keep to the wall clock whatever times the budget
    step_seconds = 0.0
    try:
        while not trainer.finished():
            if (trainer.schedule is None and opts.max_seconds is not None
                    and run_clock() - start >= opts.max_seconds):
                bar.write(f"time budget of {opts.max_seconds:g} s used up at step {trainer.step} of {trainer.max_steps}")
                break
            t0 = time.perf_counter()
            record = trainer.train_step()
            step_seconds = 0.9 * step_seconds + 0.1 * (time.perf_counter() - t0) if step_seconds else \
                time.perf_counter() - t0
            record["seconds"] = run_clock() - start
            bar.update(1)
            if trainer.schedule is not None and trainer.step % 20 == 0 and trainer.estimated_steps():
                bar.total = max(trainer.estimated_steps(), trainer.step)
            if trainer.step % 10 == 0:
                bar.set_postfix(loss=f"{record['loss']:.4f}", psnr=f"{record['psnr']:.2f}",
                                n=f"{record['count']:,}", sps=f"{1.0 / max(step_seconds, 1e-9):.1f}")
            if on_step is not None:
                on_step(trainer, record)
            if live is not None and live.due(trainer.step):  # the training frame (normalized), refreshed every N
                live.update(trainer.step, trainer.gaussians(),
                            {**record, "steps_per_second": 1.0 / max(step_seconds, 1e-9)})
            if opts.eval_every and trainer.step % opts.eval_every == 0 and not trainer.finished():
                evaluations.append(_evaluate_and_save(trainer, out, lpips, run_clock() - start, opts.renders))
                bar.write(f"step {trainer.step}: test PSNR {evaluations[-1]['psnr']:.2f} dB, "
                          f"SSIM {evaluations[-1]['ssim']:.4f}, {trainer.num_gaussians:,} Gaussians")
            now = time.perf_counter()
            if trainer.step % opts.checkpoint_every == 0 or now - last_checkpoint >= opts.checkpoint_seconds:
                save_checkpoint(trainer, out / "ckpts", opts.keep_checkpoints)
                last_checkpoint = now
    finally:
        bar.close()
        if live is not None:
            live.close()
    seconds = run_clock() - start
    if trainer.schedule is not None:
        print(f"fitted to the {opts.max_seconds:g} s budget: {trainer.step} steps, "
              f"{trainer.schedule.refines_done} refinements, {trainer.schedule.resets_done} opacity resets")
    save_checkpoint(trainer, out / "ckpts", opts.keep_checkpoints)
    final = _evaluate_and_save(trainer, out, lpips, seconds, opts.renders) if capture.test else {}
    if final:
        evaluations.append(final)
    gaussians = trainer.gaussians()
    write_ply(out / "point_cloud.ply", to_capture_frame(gaussians, capture.normalization))
    _write_json(out / "stats" / "train.json", {"history": trainer.history})
    for module in trainer.modules:
        module.export(out / "modules" / module.name)
    plot_history(trainer.history, evaluations, out / "plots" / "training.png")
    steps = trainer.step - first_step
    metrics = {"test": final, "num_gaussians": trainer.num_gaussians, "steps": trainer.step,
               "seconds_this_run": seconds, "steps_per_second": steps / seconds if seconds > 0 else None,
               "peak_memory_mb": _peak_memory_mb(), "lpips": "skipped: " + lpips.reason if lpips.reason else "scored"}
    _write_json(out / "metrics.json", metrics)
    return TrainResult(gaussians, metrics, trainer.history)
