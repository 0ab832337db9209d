"""Module construction (options, bad configs), identity at the start, eval-view behaviour, exports,
state_dict round trips through torch.save / torch.load(weights_only=True), resume through
run_training, and non-finite parameters stopping the run with the module's name."""

from __future__ import annotations

import io
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from splatforge.errors import SplatforgeError
from splatforge.train.modules import REGISTRY, build_modules
from .evidence import evidence_config
from splatforge.train.run import RunOptions, run_training
from splatforge.train.trainer import Trainer, render_batch

ALL = ("pose", "appearance", "bilateral", "blur", "background")


def test_every_module_is_registered_and_off_by_default():
    assert set(ALL) <= set(REGISTRY)
    assert evidence_config(1).modules == ""


@pytest.mark.parametrize("modules, options, message", [
    ("nosuch", {}, "unknown module 'nosuch'"),
    ("pose", {"pose": {"learning_rate": 1e-3}}, "unknown option(s) 'learning_rate'"),
    ("pose", {"pose": {"lr": "fast"}}, "option 'lr' must be a finite float"),
    ("pose", {"pose": {"lr": -1.0}}, "option 'lr' must be > 0"),
    ("bilateral", {"bilateral": {"grid_width": 1}}, "'grid_width' must be in 2..256"),
    ("bilateral", {"bilateral": {"grid_width": 2.5}}, "option 'grid_width' must be a finite int"),
    ("appearance", {"appearance": {"eval_embedding": "median"}}, "'eval_embedding' must be one of"),
    ("blur", {"blur": {"mask_init": 1.0}}, "'mask_init' must be in (0, 1)"),
    ("background", {"background": {"lr": float("nan")}}, "finite float"),
    ("pose", {"pose": [1, 2]}, "options must be a dict"),
    ("pose", {"appearance": {}}, "not enabled"),
    ("pose,pose", {}, "named twice"),
])
def test_bad_configs_are_clear_errors(demo, modules, options, message):
    with pytest.raises(SplatforgeError) as err:
        build_modules(modules, demo, evidence_config(1, modules, options))
    assert message in str(err.value)


def test_pose_refuses_a_capture_with_one_training_view(demo):
    one = replace(demo, train=demo.train[:1])
    with pytest.raises(SplatforgeError, match="'pose' needs at least 2 training views"):
        Trainer(one, evidence_config(1, "pose"))


def test_appearance_refuses_batches_of_several_views(demo):
    with pytest.raises(SplatforgeError, match="batch_size 1"):
        Trainer(demo, evidence_config(1, "appearance", batch_size=2))


def _render(trainer, view_ids=None, views=None, training=True):
    views = views if views is not None else [trainer.capture.train[i] for i in view_ids]
    vm = torch.from_numpy(np.stack([v.viewmat for v in views])).float()
    ks = torch.from_numpy(np.stack([v.K for v in views])).float()
    h, w = views[0].image.shape[:2]
    with torch.no_grad():
        rgb, *_ = render_batch(trainer.params, vm, ks, w, h, trainer.sh_degree, trainer.cfg, trainer.background,
                               trainer.modules, trainer.step,
                               view_ids=None if view_ids is None else torch.tensor(view_ids),
                               names=[v.name for v in views], training=training)
    return rgb


@pytest.mark.parametrize("name", ["pose", "appearance", "bilateral", "blur"])
def test_modules_start_at_identity(demo, name):
    """Before any step a module changes no training render (blur: its mask starts at mask_init, so
    with a zero mask it is the sharp render)."""
    options = {"blur": {"mask_init": 1e-6}} if name == "blur" else {}
    plain = Trainer(demo, evidence_config(1))
    with_module = Trainer(demo, evidence_config(1, name, options))
    expected = _render(plain, [0, 3] if name != "appearance" else [3])
    got = _render(with_module, [0, 3] if name != "appearance" else [3])
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=0)


def _train(capture, modules, steps, options=None):
    trainer = Trainer(capture, evidence_config(steps, modules, options))
    while trainer.step < steps:
        trainer.train_step()
    return trainer


def test_eval_views_are_unchanged_by_pose_bilateral_and_blur(demo):
    trained = _train(demo, "pose,bilateral,blur", 6)
    assert float(trained.modules[0].deltas.detach().abs().max()) > 0
    plain = Trainer(demo, evidence_config(1))
    plain.params = trained.params
    plain.step = trained.step
    torch.testing.assert_close(_render(trained, views=demo.test, training=False),
                               _render(plain, views=demo.test, training=False), atol=0, rtol=0)


@pytest.mark.parametrize("mode", ["mean", "zero", "none"])
def test_appearance_test_views_use_the_documented_embedding(demo, mode):
    trainer = _train(demo, "appearance", 6, {"appearance": {"eval_embedding": mode}})
    module = trainer.modules[0]
    got = _render(trainer, views=demo.test[:1], training=False)
    plain = Trainer(demo, evidence_config(1))
    plain.params, plain.step = trainer.params, trainer.step
    if mode == "none":
        torch.testing.assert_close(got, _render(plain, views=demo.test[:1], training=False), atol=0, rtol=0)
        return
    embedding = module.embeds.detach().mean(0) if mode == "mean" else torch.zeros(module.cfg.embed_dim)
    with torch.no_grad():
        vm = torch.from_numpy(demo.test[0].viewmat).float()
        correction = module.color_correction(dict(trainer.params.items()), vm, embedding)
        plain.params = torch.nn.ParameterDict({k: torch.nn.Parameter(v.detach().clone())
                                               for k, v in trainer.params.items()})
        plain.params["sh0"] += (correction / 0.28209479177387814)[:, None, :]
    assert float(correction.abs().max()) > 0
    torch.testing.assert_close(got, _render(plain, views=demo.test[:1], training=False), atol=1e-5, rtol=0)


def test_background_applies_in_training_and_evaluation(demo):
    trainer = _train(demo, "background", 4)
    color = trainer.modules[0].color().detach()
    assert not torch.allclose(color, torch.full((3,), 0.01))
    plain = Trainer(demo, evidence_config(1, background=tuple(color.tolist())))
    plain.params, plain.step = trainer.params, trainer.step
    torch.testing.assert_close(_render(trainer, views=demo.test, training=False),
                               _render(plain, views=demo.test, training=False), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip(demo, name):
    trained = _train(demo, name, 5)
    buffer = io.BytesIO()
    torch.save(trained.modules[0].state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = Trainer(demo, evidence_config(5, name))
    fresh.modules[0].load_state_dict(state)
    for a, b in zip(trained.modules[0].parameters(), fresh.modules[0].parameters()):
        assert torch.equal(a, b)
    fresh.params, fresh.step = trained.params, trained.step
    torch.testing.assert_close(_render(fresh, [1]), _render(trained, [1]), atol=0, rtol=0)
    # one more step from each: the optimizer state came along too
    for t in (trained, fresh):
        t.cfg = replace(t.cfg, max_steps=6)
    fresh.generator.set_state(trained.generator.get_state())
    fresh.params = torch.nn.ParameterDict({k: torch.nn.Parameter(v.detach().clone()) for k, v in trained.params.items()})
    fresh._build_optimizers()
    for k, opt in fresh.optimizers.items():
        opt.load_state_dict(trained.optimizers[k].state_dict())
    fresh.strategy_state = trained.strategy_state
    trained.train_step()
    fresh.train_step()
    for a, b in zip(trained.modules[0].parameters(), fresh.modules[0].parameters()):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_a_state_for_another_capture_is_refused(demo):
    trained = _train(demo, "pose", 1)
    smaller = replace(demo, train=demo.train[:5])
    other = Trainer(smaller, evidence_config(1, "pose"))
    with pytest.raises(SplatforgeError, match="checkpoint 'deltas' is"):
        other.modules[0].load_state_dict(trained.modules[0].state_dict())


class Stop(Exception):
    pass


def test_resume_with_modules_matches_an_uninterrupted_run(demo, tmp_path):
    cfg = evidence_config(12, "pose,background,bilateral")
    opts = RunOptions(checkpoint_every=5, progress=False, renders=False)
    straight = run_training(demo, tmp_path / "a", cfg, opts)

    def interrupt(trainer, record):
        if trainer.step == 7:
            raise Stop

    with pytest.raises(Stop):
        run_training(demo, tmp_path / "b", cfg, opts, on_step=interrupt)
    resumed = run_training(demo, tmp_path / "b", cfg, replace(opts, resume=True))
    for name in ("means", "scales", "quats", "opacities", "sh0", "shN"):
        assert torch.equal(getattr(straight.gaussians, name), getattr(resumed.gaussians, name)), name
    for folder in ("a", "b"):
        assert (tmp_path / folder / "modules" / "pose" / "poses.json").is_file()
    a = json.loads((tmp_path / "a" / "modules" / "pose" / "poses.json").read_text())
    b = json.loads((tmp_path / "b" / "modules" / "pose" / "poses.json").read_text())
    assert a == b
    bg_a = json.loads((tmp_path / "a" / "modules" / "background" / "background.json").read_text())
    bg_b = json.loads((tmp_path / "b" / "modules" / "background" / "background.json").read_text())
    assert bg_a == bg_b


def test_pose_export_is_in_the_capture_frame(demo, tmp_path):
    trainer = Trainer(demo, evidence_config(1, "pose"))
    path = trainer.modules[0].export(tmp_path)["poses"]
    cameras = json.loads(path.read_text())["cameras"]
    by_name = {v.name: m for v, m in zip(sorted(demo.train + demo.test, key=lambda v: v.name), demo.model_viewmats())}
    assert len(cameras) == len(demo.train)
    for cam in cameras:  # zero deltas: the refined pose is the capture's own
        np.testing.assert_allclose(np.array(cam["viewmat"]), by_name[cam["name"]], atol=1e-5)
        assert cam["rotation_change_degrees"] < 1e-3 and cam["center_shift"] < 1e-5


@pytest.mark.parametrize("name", ALL)
def test_non_finite_module_parameters_stop_the_run_naming_the_module(demo, name):
    trainer = Trainer(demo, evidence_config(3, name))
    trainer.train_step()
    with torch.no_grad():
        trainer.modules[0].parameters()[0].view(-1)[0] = math.nan
    with pytest.raises(SplatforgeError, match=f"module '{name}'"):
        for _ in range(3):  # pose/appearance/bilateral/blur act on the sampled view; background on all
            trainer.train_step()
