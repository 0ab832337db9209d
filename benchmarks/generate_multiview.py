"""Multi-view diffusion (ImageDream) benchmark: the real-size multi-view U-Net, random weights.

    python benchmarks/generate_multiview.py              # U-Net step with and without guidance, VAE
    python benchmarks/generate_multiview.py --encoders   # also the CLIP ViT-H image and text encoders

Rows: one denoising step of the released architecture (UNetConfig defaults, ~0.9 G parameters) on
4 views + the picture's view at 256x256 (latents 32x32), as the classifier-free-guidance batch
(10 frames: what `generate` runs), as a single batch (5 frames, guidance 1) and with bfloat16
weights (`MultiViewPipeline.load(precision="bf16")`), for the ratios; the
VAE (Stable Diffusion 2.1's config) encoding the picture and decoding the 4 views; with
--encoders, OpenCLIP ViT-H/14 image features and text tokens at their released sizes. Each row
gives wall and process CPU seconds (the machine may be shared: CPU seconds are the steadier
figure) and the peak resident memory. The last lines estimate a 30-step run.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from splatforge.generate.multiview.unet import MultiViewUNet, UNetConfig

VIEWS, FRAMES, LATENT = 4, 5, 32


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of `repeats` calls after one warm-up call."""
    with torch.no_grad():
        fn()
        walls, cpus = [], []
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), cpu_seconds()
            fn()
            walls.append(time.perf_counter() - wall)
            cpus.append(cpu_seconds() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def row(name: str, wall: float, cpu: float, note: str = "") -> None:
    print(f"{name:<52} {wall:>8.2f} s {cpu:>8.2f} s {peak_gib():>7.2f} GiB  {note}", flush=True)


def random_weights(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Fill a meta-device module with small random values (faster than its initialisers)."""
    module = module.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.02)
    return module.eval()


def bench_unet(repeats: int) -> tuple[float, float]:
    config = UNetConfig()
    with torch.device("meta"):
        unet = MultiViewUNet(config)
    start, cpu = time.perf_counter(), cpu_seconds()
    unet = random_weights(unet)
    params = sum(p.numel() for p in unet.parameters())
    row("U-Net build, random weights", time.perf_counter() - start, cpu_seconds() - cpu,
        f"{params / 1e9:.3f} G params")
    per_step = {}
    for label, batch, dtype in (("with guidance (10 frames)", 2, torch.float32),
                                ("guidance 1 (5 frames)", 1, torch.float32),
                                ("with guidance, bf16 weights", 2, torch.bfloat16)):
        unet = unet.to(dtype)
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(batch * FRAMES, config.in_channels, LATENT, LATENT, generator=gen)
        t = torch.full((batch * FRAMES,), 500.0)
        context = torch.randn(batch * FRAMES, 77, config.context_dim, generator=gen)
        camera = torch.randn(batch * FRAMES, config.camera_dim, generator=gen)
        ip = torch.randn(batch * FRAMES, 257, config.image_embedding_dim, generator=gen)
        ip_img = torch.randn(batch, config.in_channels, LATENT, LATENT, generator=gen)
        x, context, camera, ip, ip_img = (v.to(dtype) for v in (x, context, camera, ip, ip_img))
        wall, cpu = timed(lambda: unet(x, t, context, camera=camera, num_views=FRAMES, ip=ip,
                                       ip_img=ip_img), repeats)
        per_step[label] = (wall, cpu)
        row(f"U-Net step, {label}", wall, cpu)
    (g_wall, g_cpu), (s_wall, s_cpu), (b_wall, b_cpu) = per_step.values()
    print(f"guidance costs x{g_wall / s_wall:.2f} wall, x{g_cpu / s_cpu:.2f} CPU per step; "
          f"bf16 takes x{b_wall / g_wall:.2f} wall, x{b_cpu / g_cpu:.2f} CPU of fp32")
    return g_wall, g_cpu


def bench_vae(repeats: int) -> tuple[float, float]:
    from diffusers import AutoencoderKL

    # Stable Diffusion 2.1's VAE, which ImageDream uses (vae/config.json of the released model)
    with torch.device("meta"):
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                            down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4,
                            sample_size=256)
    vae = random_weights(vae)
    picture = torch.rand(1, 3, 256, 256) * 2 - 1
    latents = torch.randn(VIEWS, 4, LATENT, LATENT)
    wall_e, cpu_e = timed(lambda: vae.encode(picture).latent_dist.sample(), repeats)
    row("VAE encode, the picture (256x256)", wall_e, cpu_e)
    wall_d, cpu_d = timed(lambda: vae.decode(latents).sample, repeats)
    row("VAE decode, 4 views (256x256)", wall_d, cpu_d)
    return wall_e + wall_d, cpu_e + cpu_d


def bench_encoders(repeats: int) -> tuple[float, float]:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModel

    # OpenCLIP ViT-H/14 (laion2B), and SD 2.1's text tower (23 of its 24 layers)
    vision = CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                              num_attention_heads=16, image_size=224, patch_size=14,
                              hidden_act="gelu")
    text = CLIPTextConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                          num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu")
    total_wall = total_cpu = 0.0
    for name, model, data in (
            ("CLIP ViT-H/14 image features", CLIPVisionModel(vision),
             dict(pixel_values=torch.randn(1, 3, 224, 224), output_hidden_states=True)),
            ("CLIP text tokens (the empty prompt)", CLIPTextModel(text),
             dict(input_ids=torch.zeros(1, 77, dtype=torch.long)))):
        model.eval()
        wall, cpu = timed(lambda: model(**data), repeats)
        row(name, wall, cpu)
        total_wall, total_cpu = total_wall + wall, total_cpu + cpu
        del model
    return total_wall, total_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per row (after a warm-up)")
    parser.add_argument("--encoders", action="store_true", help="also the CLIP encoders (+4 GB RAM)")
    parser.add_argument("--steps", type=int, default=30, help="steps of the estimate (LGM runs 30)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'row':<52} {'wall':>10} {'CPU':>10} {'peak':>11}")
    step = bench_unet(args.repeats)
    once = bench_vae(args.repeats)
    if args.encoders:
        once = tuple(a + b for a, b in zip(once, bench_encoders(args.repeats)))
    threads = torch.get_num_threads()
    for label, k, divisor in (("this run's wall clock", 0, 1),
                              (f"CPU seconds / {threads} threads (idle cores)", 1, threads)):
        total = (args.steps * step[k] + once[k]) / divisor
        print(f"estimate from {label}: {args.steps} steps x {step[k] / divisor:.1f} s + "
              f"{once[k] / divisor:.1f} s once = {total / 60:.1f} min"
              + ("" if args.encoders else " (without the CLIP encoders: --encoders)"))


if __name__ == "__main__":
    main()
