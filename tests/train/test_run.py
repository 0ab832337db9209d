"""run_training: output files, exact resume after an interruption, SIGKILL survival, the time budget,
and a non-finite loss that stops the run keeping the last good checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

pytest.importorskip("pycolmap")

from splatforge.errors import SplatforgeError  # noqa: E402
from splatforge.io.ply import read_ply  # noqa: E402
from splatforge.capture import load_capture  # noqa: E402
from splatforge.train.run import RunOptions, newest_checkpoint, run_training  # noqa: E402
from splatforge.train.trainer import TrainConfig, Trainer  # noqa: E402

from .test_trainer import tiny_capture  # noqa: E402

CFG = TrainConfig(max_steps=24, sh_degree=1, sh_degree_interval=10, init_opacity=0.5)
# refinement inside the run, so resume must carry the strategy's running sums and its generator
DENSIFY = dict(refine_start_iter=4, refine_every=6, reset_every=12)


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    root, *_ = tiny_capture(tmp_path_factory.mktemp("cap"))
    return root, load_capture(root)


class Stop(Exception):
    pass


@pytest.mark.parametrize("strategy", ["default", "mcmc"])
def test_resume_after_interruption_matches_an_uninterrupted_run(capture, tmp_path, monkeypatch, strategy):
    _, cap = capture
    cfg = TrainConfig(**{**CFG.__dict__, **DENSIFY, "strategy": strategy})
    opts = RunOptions(checkpoint_every=5, progress=False, renders=False)
    straight = run_training(cap, tmp_path / "a", cfg, opts)

    def interrupt(trainer, record):
        if trainer.step == 13:  # 3 steps after the checkpoint at 10: those are lost
            raise Stop

    with pytest.raises(Stop):
        run_training(cap, tmp_path / "b", cfg, opts, on_step=interrupt)
    path, state = newest_checkpoint(tmp_path / "b" / "ckpts")
    assert state["step"] == 10
    resumed = run_training(cap, tmp_path / "b", cfg, RunOptions(**{**opts.__dict__, "resume": True}))
    assert resumed.metrics["steps"] == straight.metrics["steps"] == 24
    counts = {r["count"] for r in straight.history}
    assert len(counts) > 1, "the run should refine, so resume carries the strategy state"
    for name in ("means", "scales", "quats", "opacities", "sh0", "shN"):
        a, b = getattr(straight.gaussians, name), getattr(resumed.gaussians, name)
        assert a.shape == b.shape, name
        assert torch.equal(a, b), name


def test_outputs_are_written(capture, tmp_path):
    _, cap = capture
    out = tmp_path / "run"
    result = run_training(cap, out, CFG, RunOptions(eval_every=12, progress=False))
    for rel in ("config.json", "metrics.json", "point_cloud.ply", "plots/training.png", "stats/train.json",
                "stats/val_step0000012.json", "stats/val_step0000024.json"):
        assert (out / rel).is_file(), rel
    stats = json.loads((out / "stats/val_step0000024.json").read_text())
    assert {"psnr", "ssim", "num_gaussians", "elapsed_seconds", "peak_memory_mb", "step"} <= set(stats)
    assert len(list((out / "renders").glob("val_step0000024_*.png"))) == len(cap.test)
    assert len(read_ply(out / "point_cloud.ply")) == result.metrics["num_gaussians"]
    history = json.loads((out / "stats/train.json").read_text())["history"]
    assert [r["step"] for r in history] == list(range(1, 25))
    assert "lpips" in result.metrics


def test_a_second_fresh_run_into_a_used_folder_is_refused(capture, tmp_path):
    _, cap = capture
    run_training(cap, tmp_path / "run", TrainConfig(max_steps=2), RunOptions(progress=False, renders=False))
    with pytest.raises(SplatforgeError, match="resume"):
        run_training(cap, tmp_path / "run", TrainConfig(max_steps=2), RunOptions(progress=False))


def test_time_budget_stops_and_still_exports(capture, tmp_path):
    _, cap = capture
    result = run_training(cap, tmp_path / "run", TrainConfig(max_steps=100_000),
                          RunOptions(max_seconds=1.0, progress=False, renders=False))
    assert 0 < result.metrics["steps"] < 100_000
    assert (tmp_path / "run" / "point_cloud.ply").is_file()
    assert newest_checkpoint(tmp_path / "run" / "ckpts")[1]["step"] == result.metrics["steps"]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(capture, tmp_path):
    _, cap = capture

    def poison(trainer, record):
        if trainer.step == 7:
            with torch.no_grad():
                trainer.params["sh0"][:] = float("nan")

    with pytest.raises(SplatforgeError, match="diverged at step 7.*colors holds"):
        run_training(cap, tmp_path / "run", CFG, RunOptions(checkpoint_every=5, progress=False), on_step=poison)
    _, state = newest_checkpoint(tmp_path / "run" / "ckpts")
    assert state["step"] == 5
    assert all(torch.isfinite(v).all() for v in state["params"].values())
    resumed = run_training(cap, tmp_path / "run", CFG, RunOptions(resume=True, progress=False, renders=False))
    assert resumed.metrics["steps"] == CFG.max_steps


def test_a_nan_loss_is_a_clear_error(capture, tmp_path, monkeypatch):
    from splatforge.train import trainer as trainer_module

    _, cap = capture
    monkeypatch.setattr(trainer_module, "ssim", lambda a, b: torch.tensor(float("inf")))
    with pytest.raises(SplatforgeError, match="loss became -inf at step 0"):
        run_training(cap, tmp_path / "run", CFG, RunOptions(progress=False))
    assert not list((tmp_path / "run" / "ckpts").glob("*.pt"))


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(capture, tmp_path):
    _, cap = capture
    out = tmp_path / "run"
    run_training(cap, out, TrainConfig(max_steps=10), RunOptions(checkpoint_every=5, progress=False, renders=False))
    newest = sorted((out / "ckpts").glob("ckpt_*.pt"))[-1]
    newest.write_bytes(newest.read_bytes()[:100])
    path, state = newest_checkpoint(out / "ckpts")
    assert state["step"] == 5 and path != newest


def test_sigkill_loses_at_most_the_steps_since_the_last_checkpoint(capture, tmp_path):
    root, cap = capture
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "splatforge.cli", "train", str(root), "-o", str(out), "--max-steps", "100000",
           "--checkpoint-every", "20", "--no-progress", "--sh-degree", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ})
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and len(list((out / "ckpts").glob("ckpt_*.pt"))) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    path, state = newest_checkpoint(out / "ckpts")
    assert state["step"] >= 20 and state["step"] % 20 == 0
    done = subprocess.run(cmd[:7] + ["--max-steps", str(state["step"] + 5), "--resume", "--no-progress",
                                     "--sh-degree", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"resumed from {path}" in done.stdout
    assert json.loads((out / "metrics.json").read_text())["steps"] == state["step"] + 5


class StepClock:
    """A clock that moves only when a test's on_step says so: runs see the same times step by step."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def tick(self, trainer, record) -> None:
        self.now += 0.0625


BUDGET = TrainConfig(sh_degree=1, init_opacity=0.5)  # no max_steps: the schedule is fitted to the budget


def test_a_budgeted_run_ends_at_its_final_rate_with_densification_finished(capture, tmp_path):
    _, cap = capture
    clock, seen = StepClock(), {}

    def probe(trainer, record):
        clock.tick(trainer, record)
        seen.setdefault("trainer", trainer)
        seen.setdefault("counts", set()).add(record["count"])

    result = run_training(cap, tmp_path / "run", BUDGET, RunOptions(max_seconds=8.0, progress=False, renders=False),
                          on_step=probe, clock=clock)
    trainer = seen["trainer"]
    assert result.metrics["steps"] == 128  # 8 s at 1/16 s a step
    assert trainer.plan.progress == pytest.approx(1.0) and not trainer.plan.accumulate
    assert trainer.means_lr() == pytest.approx(0.01 * BUDGET.means_lr, rel=1e-6)
    assert trainer.sh_degree == 1
    assert trainer.schedule.refines_done >= 1 and trainer.schedule.resets_done == 1  # at half the budget
    assert len(seen["counts"]) > 1, "the budgeted run should densify"
    assert TrainConfig().max_steps is None and Trainer(cap, TrainConfig()).max_steps == 30_000


def test_a_budgeted_run_resumed_midway_matches_the_uninterrupted_one(capture, tmp_path):
    _, cap = capture
    opts = RunOptions(max_seconds=4.0, checkpoint_every=10, progress=False, renders=False)
    clock = StepClock()
    straight = run_training(cap, tmp_path / "a", BUDGET, opts, on_step=clock.tick, clock=clock)

    clock = StepClock()

    def interrupt(trainer, record):
        clock.tick(trainer, record)
        if trainer.step == 33:
            raise Stop

    with pytest.raises(Stop):
        run_training(cap, tmp_path / "b", BUDGET, opts, on_step=interrupt, clock=clock)
    assert newest_checkpoint(tmp_path / "b" / "ckpts")[1]["step"] == 30
    clock = StepClock(start=1000.0)  # a later process: only the trained seconds in the checkpoint count
    resumed = run_training(cap, tmp_path / "b", BUDGET, RunOptions(**{**opts.__dict__, "resume": True}),
                           on_step=clock.tick, clock=clock)
    assert resumed.metrics["steps"] == straight.metrics["steps"] == 64
    for name in ("means", "scales", "quats", "opacities", "sh0", "shN"):
        assert torch.equal(getattr(straight.gaussians, name), getattr(resumed.gaussians, name)), name


def test_sky_points_ring_the_cameras_far_away_coloured_from_the_photos(capture):
    import numpy as np

    from splatforge.core.sh import C0
    from splatforge.train.trainer import SKY_POINTS, SKY_RADIUS

    _, cap = capture
    n = len(cap.points)
    assert Trainer(cap, TrainConfig()).num_gaussians == n  # step-limited runs start from the SfM points only
    assert Trainer(cap, TrainConfig(), budget_seconds=60.0).num_gaussians == n + SKY_POINTS
    trainer = Trainer(cap, TrainConfig(sky_points=300))
    sky = trainer.params["means"].detach()[n:].double().numpy()
    centre = np.stack([np.linalg.inv(v.viewmat)[:3, 3] for v in cap.train]).mean(axis=0)
    np.testing.assert_allclose(np.linalg.norm(sky - centre, axis=1), SKY_RADIUS, rtol=1e-5)
    colors = (0.5 + C0 * trainer.params["sh0"].detach()[n:, 0]).double().numpy()
    view = cap.train[0]
    cam = sky @ view.viewmat[:3, :3].T + view.viewmat[:3, 3]
    u = view.K[0, 0] * cam[:, 0] / cam[:, 2] + view.K[0, 2]
    v = view.K[1, 1] * cam[:, 1] / cam[:, 2] + view.K[1, 2]
    h, w = view.image.shape[:2]
    inside = (cam[:, 2] > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    assert inside.sum() > 3  # the first view's photo colours the points it sees
    np.testing.assert_allclose(colors[inside], view.image[v[inside].astype(int), u[inside].astype(int)], atol=1e-5)
