"""Two threads running the CPU kernels at once (the viewer's "Render still" on viser's threads
while `train --viewer` trains) complete with the same images as one thread, even on Numba's
workqueue threading layer, which aborts the process on concurrent parallel launches."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numba
import pytest

CHILD = textwrap.dedent("""
    import threading

    import numba
    import torch

    from splatforge.core.cameras import intrinsics_from_fov, look_at
    from splatforge.core.gaussians import Gaussians
    from splatforge.core.metrics import ssim
    from splatforge.raster import rasterization

    gen = torch.Generator().manual_seed(0)
    g = Gaussians.from_points(torch.randn(3000, 3, generator=gen), sh_degree=1, scale=0.05, opacity=0.8)
    g.shN = torch.randn(g.shN.shape, generator=gen) * 0.1
    views = look_at(torch.tensor([[0.0, -4.0, 1.0], [3.0, -3.0, 0.5]]), (0.0, 0.0, 0.0))
    ks = intrinsics_from_fov(96, 80, fov_x_degrees=60.0)[None].expand(2, 3, 3)
    target = torch.rand(1, 80, 96, 3, generator=gen)

    def still(i):  # what the viewer's "Render still" does
        with torch.no_grad():
            return rasterization(**g.rasterization_args(), viewmats=views[i:i + 1], Ks=ks[i:i + 1],
                                 width=96, height=80)[0]

    def step(i):  # what a training step does: forward, SSIM, backward
        params = g.clone().requires_grad_()
        rgb = rasterization(**params.rasterization_args(), viewmats=views[i:i + 1], Ks=ks[i:i + 1],
                            width=96, height=80)[0]
        loss = 1 - ssim(rgb, target)  # the fused CPU SSIM kernels
        loss.backward()
        return params.means.grad

    expected = {("still", i): still(i) for i in range(2)}
    expected.update({("step", i): step(i) for i in range(2)})
    same = []

    def worker(kind, i):
        fn = still if kind == "still" else step
        same.extend(torch.equal(fn(i), expected[(kind, i)]) for _ in range(15))

    threads = [threading.Thread(target=worker, args=args)
               for args in (("still", 0), ("still", 1), ("step", 0), ("step", 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(numba.threading_layer(), len(same), all(same))
""")


@pytest.mark.parametrize("layer", ["workqueue", "default"])
def test_concurrent_renders_and_training_steps_complete_with_the_same_results(layer):
    env = dict(os.environ, NUMBA_THREADING_LAYER=layer, NUMBA_NUM_THREADS=str(max(2, numba.config.NUMBA_NUM_THREADS)))
    child = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=900)
    assert child.returncode == 0, f"the child died ({child.returncode}):\n{child.stderr[-2000:]}"
    used, count, all_same = child.stdout.split()
    assert (used == "workqueue") == (layer == "workqueue")
    assert count == "60" and all_same == "True"
