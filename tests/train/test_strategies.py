"""Densification: each operation keeps optimizer state rows in step with the parameters, and the
default strategy clones, splits, prunes and resets as its settings say."""

from __future__ import annotations

import math

import torch

from splatforge.train.strategies import DefaultStrategy
from splatforge.train.strategies.ops import duplicate, relocate, remove, reset_opacities, split


def make(n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    params = torch.nn.ParameterDict({
        "means": torch.randn(n, 3, generator=g), "scales": torch.full((n, 3), math.log(0.05)),
        "quats": torch.randn(n, 4, generator=g), "opacities": torch.zeros(n),
        "sh0": torch.randn(n, 1, 3, generator=g), "shN": torch.zeros(n, 3, 3),
    })
    optimizers = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    for p in params.values():  # one step so every optimizer has per-row state
        p.grad = torch.randn(p.shape, generator=g)
    for opt in optimizers.values():
        opt.step()
    return params, optimizers


def check_consistent(params, optimizers):
    for name, p in params.items():
        group_params = optimizers[name].param_groups[0]["params"]
        assert group_params[0] is p, name
        state = optimizers[name].state[p]
        assert state["exp_avg"].shape == p.shape and state["exp_avg_sq"].shape == p.shape, name


def test_duplicate_remove_split_keep_optimizer_rows():
    params, opts = make()
    before = {k: opts[k].state[p]["exp_avg"].clone() for k, p in params.items()}
    means = params["means"].detach().clone()
    duplicate(params, opts, torch.tensor([1, 0, 0, 1, 0, 0, 0, 0, 0, 0], dtype=torch.bool))
    check_consistent(params, opts)
    assert params["means"].shape[0] == 12
    assert torch.equal(params["means"][10:], means[[0, 3]])
    assert torch.equal(opts["means"].state[params["means"]]["exp_avg"][:10], before["means"])
    assert float(opts["means"].state[params["means"]]["exp_avg"][10:].abs().max()) == 0
    remove(params, opts, torch.arange(12) % 3 == 0)
    check_consistent(params, opts)
    assert params["means"].shape[0] == 8
    scales = params["scales"].detach().clone()
    split(params, opts, torch.arange(8) < 2, generator=torch.Generator().manual_seed(0))
    check_consistent(params, opts)
    assert params["means"].shape[0] == 10
    assert torch.allclose(params["scales"][-4:], (scales[:2] - math.log(1.6)).repeat(2, 1))
    for opt in opts.values():  # the optimizers still step
        for p in opt.param_groups[0]["params"]:
            p.grad = torch.ones_like(p)
        opt.step()


def test_reset_and_relocate():
    params, opts = make()
    params["opacities"].data[:] = 3.0
    reset_opacities(params, opts, 0.01)
    assert float(torch.sigmoid(params["opacities"].detach()).max()) <= 0.01 + 1e-6
    assert float(opts["opacities"].state[params["opacities"]]["exp_avg"].abs().max()) == 0
    means = params["means"].detach().clone()
    relocate(params, opts, dead=torch.tensor([0, 1]), sampled=torch.tensor([5, 6]),
             new_opacity=torch.tensor([0.2, 0.3]), new_log_scales=torch.full((2, 3), -4.0))
    check_consistent(params, opts)
    assert torch.equal(params["means"][[0, 1]], means[[5, 6]])
    assert torch.equal(params["opacities"][[0, 1, 5, 6]], torch.tensor([0.2, 0.3, 0.2, 0.3]))


def run_refine(strategy, params, opts, state, step, grad_rows, n_cameras=1, width=100, height=80):
    n = params["means"].shape[0]
    means2d = torch.zeros(n_cameras, n, 2, requires_grad=True)
    info = {"means2d": means2d, "radii": torch.full((n_cameras, n, 2), 5, dtype=torch.int32),
            "width": width, "height": height, "n_cameras": n_cameras, "gaussian_ids": None}
    strategy.step_pre_backward(params, opts, state, step, info)
    grad = torch.zeros(n_cameras, n, 2)
    grad[:, grad_rows, 0] = 1.0  # far above grow_grad2d once scaled to NDC
    (means2d * grad).sum().backward()
    return strategy.step_post_backward(params, opts, state, step, info)


def test_default_strategy_clones_small_splits_large_prunes_transparent_and_resets():
    params, opts = make(n=6)
    params["scales"].data[3:] = math.log(0.5)  # large: split; rows 0-2 small: clone
    params["opacities"].data[5] = -10.0  # opacity ~4.5e-5: pruned
    strategy = DefaultStrategy(refine_start_iter=0, refine_every=10, reset_every=30)
    state = strategy.initialize_state(scene_scale=10.0)  # clone below 0.1, split above
    counts = run_refine(strategy, params, opts, state, step=5, grad_rows=[0, 3])
    assert counts == {"duplicated": 0, "split": 0, "pruned": 0, "reset": 0}  # not a refine step
    counts = run_refine(strategy, params, opts, state, step=10, grad_rows=[0, 3])
    assert counts["duplicated"] == 1 and counts["split"] == 1 and counts["pruned"] == 1
    # 6 + 1 clone + 1 extra half of the split - 1 pruned
    assert params["means"].shape[0] == 7
    check_consistent(params, opts)
    assert state["grad2d"].shape[0] == 7 and float(state["grad2d"].abs().max()) == 0
    params["opacities"].data[:] = 2.0
    counts = run_refine(strategy, params, opts, state, step=30, grad_rows=[])
    assert counts["reset"] == 1
    assert float(torch.sigmoid(params["opacities"].detach()).max()) <= 2 * strategy.prune_opa + 1e-6


def test_default_strategy_packed_and_absgrad_inputs():
    params, opts = make(n=4)
    strategy = DefaultStrategy(refine_start_iter=0, refine_every=1, absgrad=True)
    state = strategy.initialize_state(scene_scale=10.0)
    means2d = torch.zeros(3, 2, requires_grad=True)  # packed: 3 visible (camera, Gaussian) pairs
    means2d.absgrad = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    info = {"means2d": means2d, "radii": torch.full((3, 2), 4, dtype=torch.int32), "width": 50, "height": 50,
            "n_cameras": 1, "gaussian_ids": torch.tensor([2, 0, 1])}
    counts = strategy.step_post_backward(params, opts, state, 1, info, packed=True)
    assert counts["duplicated"] == 1  # Gaussian 2, small, high absolute gradient


def test_relocation_values_preserve_the_rendered_opacity():
    from splatforge.train.strategies.mcmc import relocation_values

    o = torch.tensor([0.3, 0.8, 0.5, 0.99], dtype=torch.float64)
    s = torch.ones(4, 3, dtype=torch.float64)
    n = torch.tensor([1, 2, 5, 3])
    new_o, new_s = relocation_values(o, s, n)
    torch.testing.assert_close(1 - (1 - new_o) ** n.double(), o)  # n copies stack to the original opacity
    torch.testing.assert_close(new_o[0], o[0])
    torch.testing.assert_close(new_s[0], s[0])  # one copy: unchanged
    assert bool((new_s[1:] < 1).all()) and bool((new_s[1:] > 0).all())


def test_mcmc_relocates_dead_grows_to_cap_and_keeps_optimizers():
    from splatforge.train.strategies import MCMCStrategy

    params, opts = make(n=20)
    params["opacities"].data[:5] = -10.0  # dead
    params["opacities"].data[5:] = 1.0
    strategy = MCMCStrategy(refine_start_iter=0, refine_every=10, cap_max=22)
    state = strategy.initialize_state(seed=1)
    means_before = params["means"].detach().clone()
    counts = strategy.step_post_backward(params, opts, state, step=10, info={}, lr=1e-4)
    assert counts == {"relocated": 5, "added": 1}
    check_consistent(params, opts)
    assert params["means"].shape[0] == 21
    assert float(torch.sigmoid(params["opacities"].detach()).min()) > strategy.min_opacity
    counts = strategy.step_post_backward(params, opts, state, step=20, info={}, lr=1e-4)
    assert counts["added"] == 1 and params["means"].shape[0] == 22  # the cap
    counts = strategy.step_post_backward(params, opts, state, step=30, info={}, lr=1e-4)
    assert counts["added"] == 0
    # noise: opaque Gaussians barely move (the gate), and nothing moves without a learning rate
    opaque = params["means"].detach()[5:20]
    assert float((opaque - means_before[5:20]).abs().max()) < 1e-3
    fixed = params["means"].detach().clone()
    strategy.step_post_backward(params, opts, state, step=31, info={}, lr=0.0)
    assert torch.equal(params["means"].detach(), fixed)


def test_mcmc_noise_kernel_matches_the_torch_form():
    """The fused noise pass (float32 CPU parameters) moves each mean as the torch form does: by
    Sigma (gate * scale * noise), with the gate sigmoid(100 ((1 - opacity) - 0.995))."""
    from splatforge.train.strategies import MCMCStrategy

    n = 400
    g = torch.Generator().manual_seed(3)
    params32 = torch.nn.ParameterDict({
        "means": torch.randn(n, 3, generator=g), "quats": torch.randn(n, 4, generator=g),
        "scales": torch.randn(n, 3, generator=g) * 0.5 - 2.0,
        "opacities": torch.linspace(-9.0, 3.0, n),  # the gate from fully open to shut
    })
    params64 = torch.nn.ParameterDict({k: v.detach().double() for k, v in params32.items()})  # torch form
    strategy = MCMCStrategy()
    with torch.no_grad():  # as in step_post_backward
        for params in (params32, params64):
            strategy._inject_noise(params, 0.7, torch.Generator().manual_seed(5))
    moved = params64["means"].detach() - params32["means"].detach().double()
    assert float(moved.abs().max()) < 1e-5
    start = torch.randn(n, 3, generator=torch.Generator().manual_seed(3))
    shift = (params32["means"].detach() - start).norm(dim=1)
    assert float(shift[:50].min()) > 1e-4 and float(shift[-50:].max()) == 0.0  # transparent move, opaque stay
