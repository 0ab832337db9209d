"""Image-fit benchmark on real photographs (scikit-image's bundled samples: pip install scikit-image).

    python benchmarks/fit2d.py [--quick] [--blend alpha|sum]

Rows: TinySplat's setting (1,000 Gaussians x 1,000 steps at 256x256) and GaussianImage's size
(10,000 Gaussians x 2,000 steps at 768x512). Each row also times a few steps of the same fit with
the dense torch reference renderer in this process and prints the per-step ratio.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from PIL import Image

from splatforge.fit2d import fit_image

PHOTOS = {
    "astronaut": ("astronaut.png", (256, 256)),  # 512x512 photograph, downscaled
    "coffee": ("coffee.png", (256, 256)),  # 600x400 photograph, centre crop + downscale
    "motorcycle": ("motorcycle_left.png", (768, 512)),  # 741x500 photograph, resized
    "rocket": ("rocket.jpg", (768, 512)),  # 640x427 photograph, resized
}


def photo(name: str) -> np.ndarray:
    try:
        import skimage
    except ImportError as exc:
        raise SystemExit("this benchmark reads scikit-image's bundled photographs: pip install scikit-image") from exc
    filename, (w, h) = PHOTOS[name]
    im = Image.open(os.path.join(os.path.dirname(skimage.__file__), "data", filename)).convert("RGB")
    scale = max(w / im.width, h / im.height)
    im = im.resize((max(w, round(im.width * scale)), max(h, round(im.height * scale))), Image.LANCZOS)
    left, top = (im.width - w) // 2, (im.height - h) // 2
    return np.asarray(im.crop((left, top, left + w, top + h)), np.float32) / 255.0


def reference_ms_per_step(image: np.ndarray, n: int, blend: str, steps: int = 2) -> float:
    """Milliseconds per step of the same fit with the dense torch renderer (autograd backward)."""
    start = time.perf_counter()
    fit_image(image, num_gaussians=n, steps=steps, blend=blend, backend="torch", progress=False)
    return 1000.0 * (time.perf_counter() - start) / steps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only the 256x256 rows")
    args = parser.parse_args(argv)
    # (photo, N, steps, settings): the defaults (alpha blending), sum blending, and sum blending
    # started from smaller Gaussians (init_scale 0.35), the fastest setting
    settings = [dict(blend="alpha"), dict(blend="sum"), dict(blend="sum", init_scale=0.35)]
    rows = [(p, 1_000, 1_000, s) for p in ("astronaut", "coffee") for s in settings]
    if not args.quick:
        rows += [(p, 10_000, 2_000, s) for p in ("motorcycle", "rocket") for s in settings]
    fit_image(photo("astronaut"), num_gaussians=10, steps=2, progress=False)  # compile the kernels
    print(f"{'photo':<11} {'size':>8} {'N':>7} {'steps':>6} {'settings':>18} | {'PSNR dB':>7} {'SSIM':>6} "
          f"{'seconds':>8} {'ms/step':>8} | {'ref ms/step':>11} {'ratio':>7}")
    print("-" * 112)
    for name, n, steps, extra in rows:
        image = photo(name)
        result = fit_image(image, num_gaussians=n, steps=steps, progress=False, **extra)
        m = result.metrics
        per_step = 1000.0 * m["seconds"] / steps
        small = n * image.shape[0] * image.shape[1] <= 1_000 * 256 * 256
        ref = reference_ms_per_step(image, n, extra["blend"]) if small else None
        ref_s = f"{ref:,.0f}" if ref else "-"
        ratio = f"{ref / per_step:,.0f}x" if ref else "-"
        label = " ".join(f"{v}" if k == "blend" else f"{k}={v}" for k, v in extra.items())
        print(f"{name:<11} {image.shape[1]}x{image.shape[0]:<4} {n:>7,} {steps:>6} {label:>18} | "
              f"{m['psnr']:>7.2f} {m['ssim']:>6.3f} {m['seconds']:>8.1f} {per_step:>8.1f} | {ref_s:>11} {ratio:>7}")
    print("goals: 1,000 x 1,000 at 256x256 <= 6 s; 768x512 with 10,000 Gaussians >= 30 dB in <= 90 s")


if __name__ == "__main__":
    main()
