"""How much LiveViewer slows training: a train-like loop (rasterization forward + backward at 320x240 and
Adam on 50,000 Gaussians) with and without `LiveViewer.update` every 100 steps, alternated twice; prints
the update's cost on the training thread, the worker's CPU time per refresh and both wall times.

    .venv/bin/python -m tests.view.measure_live_overhead [STEPS]

Not a test (it takes minutes and measures time); the figures are quoted in splatforge/view/live.py.
"""

from __future__ import annotations

import sys
import time

import torch

from splatforge.core.cameras import intrinsics_from_fov, look_at
from splatforge.core.gaussians import Gaussians
from splatforge.raster import rasterization
from splatforge.view import LiveViewer

N, WIDTH, HEIGHT, EVERY = 50_000, 320, 240, 100


def main(steps: int) -> None:
    torch.manual_seed(0)
    start = Gaussians.from_points(torch.randn(N, 3), torch.rand(N, 3), sh_degree=1, scale=0.03, opacity=0.3)
    params = {k: torch.nn.Parameter(v.clone()) for k, v in start.as_dict().items()}
    optimizer = torch.optim.Adam(params.values(), lr=1e-3)
    viewmats = look_at([0, -4, 1.5], [0, 0, 0])[None]
    ks = intrinsics_from_fov(WIDTH, HEIGHT, fov_y_degrees=50)[None]
    target = torch.rand(1, HEIGHT, WIDTH, 3)

    def train_step() -> float:
        rgb, _, _ = rasterization(params["means"], params["quats"], torch.exp(params["scales"]),
                                  torch.sigmoid(params["opacities"]), torch.cat([params["sh0"], params["shN"]], 1),
                                  viewmats, ks, WIDTH, HEIGHT, sh_degree=1)
        loss = (rgb - target).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    def run(viewer: LiveViewer | None) -> tuple[float, list[float]]:
        begin, update_s = time.perf_counter(), []
        for step in range(steps):
            loss = train_step()
            if viewer is not None:
                t = time.perf_counter()
                if viewer.update(step, Gaussians(**params), {"loss": loss, "count": N}):
                    update_s.append(time.perf_counter() - t)
        return time.perf_counter() - begin, update_s

    for _ in range(3):  # compile and warm up
        train_step()
    refresh_cpu_ms: list[float] = []
    live = LiveViewer(port=0, every=EVERY)
    refresh = live._refresh

    def timed_refresh(*args):
        t = time.thread_time()
        refresh(*args)
        refresh_cpu_ms.append(1000 * (time.thread_time() - t))

    live._refresh = timed_refresh
    base, with_viewer, update_s = [], [], []
    for _ in range(2):
        base.append(run(None)[0])
        live._last_step = None
        seconds, updates = run(live)
        live.wait_idle()
        with_viewer.append(seconds)
        update_s += updates
    live.close()
    step_ms = 1000 * min(base) / steps
    update_ms = 1000 * sum(update_s) / len(update_s)
    worker_ms = sum(refresh_cpu_ms) / len(refresh_cpu_ms)
    print(f"{steps} steps, {N:,} Gaussians: without viewer {', '.join(f'{s:.1f}' for s in base)} s, "
          f"with viewer {', '.join(f'{s:.1f}' for s in with_viewer)} s ({step_ms:.0f} ms/step)")
    print(f"per refresh: update() {update_ms:.1f} ms on the training thread + worker {worker_ms:.1f} ms CPU "
          f"= {100 * (update_ms + worker_ms) / (EVERY * step_ms):.2f}% of {EVERY} steps; "
          f"wall-clock slowdown (best of 2 each) {100 * (min(with_viewer) - min(base)) / min(base):+.1f}%")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
