"""The schedule fitted to a time budget, driven by a fake clock: progress follows time, events fire
once each inside their windows, the step-time model follows the Gaussian count, and a budgeted run
(and one resumed halfway) ends at its final learning rate with densification finished."""

from __future__ import annotations

import pytest
import torch

from splatforge.errors import SplatforgeError
from splatforge.train.schedule import BudgetSchedule, FittedSchedule, StepTimeModel
from splatforge.train.strategies import DefaultStrategy


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def drive(schedule: BudgetSchedule, clock: FakeClock, seconds_per_step, count=lambda step: 1000):
    """Run the schedule to its end, the clock moving `seconds_per_step(count)` per step; the plans."""
    plans, step = [], 0
    while not schedule.finished(count(step)):
        plans.append(schedule.plan(step, count(step)))
        clock.now += seconds_per_step(count(step))
        schedule.step_done(step, count(step))
        step += 1
        assert step < 100_000
    return plans


def test_progress_follows_time_and_every_setting_maps_from_it():
    clock = FakeClock()
    fit = FittedSchedule(refine_start=0.1, refine_stop=0.6, refinements=10, min_refine_every=5, max_refine_every=100,
                         reset_every=0.25, sh_degree_every=0.2, scale2d_stop=0.3)
    schedule = BudgetSchedule(10.0, fit, max_sh_degree=3, clock=clock)
    plans = drive(schedule, clock, lambda n: 0.01)
    assert 990 <= len(plans) <= 1001  # 10 s at 10 ms a step
    progress = [p.progress for p in plans]
    assert all(b >= a for a, b in zip(progress, progress[1:]))
    assert progress[-1] == pytest.approx(1.0, abs=2e-3)
    assert plans[-1].means_lr_factor == pytest.approx(0.01, rel=0.01)
    for p in plans:
        assert p.means_lr_factor == pytest.approx(0.01 ** p.progress)
        assert p.sh_degree == min(int(p.progress / 0.2 + 1e-9), 3)
        assert p.accumulate == (p.progress < 0.6)
        assert p.scale2d == (p.progress < 0.3)
    refines = [i for i, p in enumerate(plans) if p.refine]
    assert all(0.1 < plans[i].progress < 0.6 for i in refines)
    gaps = {b - a for a, b in zip(refines, refines[1:])}
    assert gaps == {50}  # (1000 steps x 0.5 of the run) / 10 refinements
    resets = [p.progress for p in plans if p.reset_opacities]
    assert len(resets) == 2 and resets[0] == pytest.approx(0.25, abs=2e-3) and resets[1] == pytest.approx(0.5, abs=2e-3)
    first_reset = next(i for i, p in enumerate(plans) if p.reset_opacities)
    assert not any(p.prune_large for p in plans[:first_reset]) and all(p.prune_large for p in plans[first_reset:])


def test_step_time_model_follows_the_count_and_sets_the_refine_interval():
    model = StepTimeModel()
    for n in range(1000, 50_000, 500):
        model.add(n, 0.002 + 1e-6 * n)
    model.fit()
    assert model.a == pytest.approx(0.002, rel=1e-6) and model.b == pytest.approx(1e-6, rel=1e-6)
    assert model.predict(100_000) == pytest.approx(0.102)

    # a scene that grows while refining: steps slow down, and the estimate of the steps left follows
    clock = FakeClock()
    schedule = BudgetSchedule(60.0, FittedSchedule(), max_sh_degree=3, clock=clock)
    plans = drive(schedule, clock, lambda n: 1e-3 + 2e-7 * n, count=lambda step: 5000 + 20 * min(step, 3000))
    # 1 ms + 0.2 us per Gaussian: the true step count is what the clock allowed
    assert schedule.estimated_steps == pytest.approx(len(plans), rel=0.02)
    assert plans[-1].progress == pytest.approx(1.0, abs=2e-3) and not plans[-1].accumulate


def test_the_refine_interval_stays_within_its_bounds():
    clock = FakeClock()
    fast = BudgetSchedule(2.0, FittedSchedule(refinements=25, min_refine_every=25, max_refine_every=100), 3, clock)
    plans = drive(fast, clock, lambda n: 1e-4)  # 20,000 steps would allow refining every 560
    refines = [i for i, p in enumerate(plans) if p.refine]
    assert {b - a for a, b in zip(refines, refines[1:])} == {100}
    clock = FakeClock()
    slow = BudgetSchedule(10.0, FittedSchedule(refinements=25, min_refine_every=25, max_refine_every=100), 3, clock)
    plans = drive(slow, clock, lambda n: 0.02)  # 500 steps: 15 steps apart would be too few
    refines = [i for i, p in enumerate(plans) if p.refine]
    assert refines and {b - a for a, b in zip(refines, refines[1:])} == {25}


def test_state_round_trip_continues_the_same_schedule():
    clock = FakeClock()
    straight = BudgetSchedule(5.0, FittedSchedule(), 3, clock)
    plans = drive(straight, clock, lambda n: 0.01)

    clock = FakeClock()
    first = BudgetSchedule(5.0, FittedSchedule(), 3, clock)
    head = []
    for step in range(230):
        head.append(first.plan(step, 1000))
        clock.now += 0.01
        first.step_done(step, 1000)
    state = first.state_dict()
    clock.now += 1000.0  # a restart later: only the trained seconds count
    second = BudgetSchedule(5.0, FittedSchedule(), 3, clock)
    second.load_state_dict(state)
    tail, step = [], 230
    while not second.finished(1000):
        tail.append(second.plan(step, 1000))
        clock.now += 0.01
        second.step_done(step, 1000)
        step += 1
    resumed = head + tail
    assert len(resumed) == len(plans)
    assert [p.refine for p in resumed] == [p.refine for p in plans]
    assert [p.reset_opacities for p in resumed] == [p.reset_opacities for p in plans]
    assert [p.progress for p in resumed] == pytest.approx([p.progress for p in plans])


def test_bad_budgets_and_fractions_are_refused():
    with pytest.raises(SplatforgeError, match="positive number of seconds"):
        BudgetSchedule(0.0, FittedSchedule(), 3)
    with pytest.raises(SplatforgeError, match="refine_start < refine_stop"):
        BudgetSchedule(10.0, FittedSchedule(refine_start=0.8, refine_stop=0.5), 3)


def test_default_strategy_follows_the_plan_not_its_step_numbers():
    from splatforge.train.schedule import StepPlan

    g = torch.Generator().manual_seed(0)
    n = 20
    params = torch.nn.ParameterDict({
        "means": torch.randn(n, 3, generator=g), "scales": torch.full((n, 3), -3.0),
        "quats": torch.randn(n, 4, generator=g), "opacities": torch.full((n,), 2.0),
        "sh0": torch.randn(n, 1, 3, generator=g), "shN": torch.zeros(n, 3, 3)})
    optimizers = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    strategy = DefaultStrategy(refine_start_iter=10_000, refine_every=1000, reset_every=1000, cap_max=25)
    state = strategy.initialize_state()
    means2d = torch.zeros(1, n, 2, requires_grad=True)
    means2d.grad = torch.ones(1, n, 2)  # every Gaussian's gradient is high: all want to grow
    info = {"means2d": means2d, "radii": torch.ones(1, n, 2, dtype=torch.int32) * 3, "width": 64, "height": 64,
            "n_cameras": 1}
    plan = StepPlan(progress=0.5, sh_degree=0, means_lr_factor=0.1, accumulate=True, refine=True,
                    reset_opacities=True, prune_large=False, scale2d=False)
    counts = strategy.step_post_backward(params, optimizers, state, 7, info, plan=plan)  # step 7: no rule fires
    assert counts["duplicated"] + counts["split"] == 5 and params["means"].shape[0] == 25  # cap_max
    assert counts["reset"] == 1
    assert torch.allclose(torch.sigmoid(params["opacities"]), torch.full((25,), 0.01))
    counts = strategy.step_post_backward(params, optimizers, state, 8, info, plan=plan)
    assert params["means"].shape[0] == 25  # at the cap nothing grows
