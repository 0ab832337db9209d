"""`splatforge generate`: a thin layer over splatforge.generate."""

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional

from ._cli_util import Commands
from .errors import SplatforgeError

Preset = Literal["big", "small", "tiny", "mini"]  # splatforge.generate.lgm.presets.PRESETS (a test keeps them equal)
Precision = Literal["fp32", "bf16"]  # splatforge.generate.api.PRECISIONS


def _generate_options():
    import tyro

    from .generate.render import TurntableParams

    @dataclass
    class GenerateOptions:
        output: Annotated[Path, tyro.conf.arg(aliases=("-o",))]  # the PLY to write
        # a picture of one object (PNG with a transparent background, or any picture with rembg installed)
        input: tyro.conf.Positional[Optional[Path]] = None
        # four views FRONT,RIGHT,BACK,LEFT (azimuths 0,90,180,270, square, one size), instead of the diffusion stage
        views: Optional[str] = None
        video: Optional[Path] = None  # also render a turntable MP4 here
        video_frames: int = TurntableParams.num_frames  # frames of the turntable (360 degrees)
        video_size: int = TurntableParams.size  # turntable frame size in pixels
        preset: Preset = "big"  # LGM network: 'big' (released weights), 'small', 'tiny', or 'mini' (tests)
        checkpoint: Optional[Path] = None  # LGM weights (.safetensors or torch); default: the released ones from the Hugging Face cache
        seed: Optional[int] = None  # random LGM weights from this seed instead of a checkpoint (testing)
        diffusion_model: Optional[str] = None  # multi-view diffusion weights (a Hugging Face id or folder)
        steps: int = 30  # denoising steps of the multi-view diffusion
        guidance: float = 5.0  # classifier-free guidance scale of the multi-view diffusion
        diffusion_seed: int = 0  # noise seed of the multi-view diffusion
        device: Literal["cpu", "cuda", "mps"] = "cpu"  # torch device
        # arithmetic of the diffusion U-Net and the LGM network: bf16 takes ~0.6x the CPU time on CPUs with
        # AVX512-BF16/AMX (the Gaussians move by ~3e-3 on average)
        precision: Precision = "fp32"

    return GenerateOptions


def register(commands: Commands) -> None:
    """`generate`."""
    commands.add("generate", "one picture of an object -> a 3D Gaussian object with LGM",
                 _generate_options, _generate,
                 description="Generate a whole 3D object from one picture of it with LGM: multi-view diffusion "
                             "(ImageDream) imagines four views, the LGM network turns them into Gaussians. Writes an "
                             "INRIA-layout PLY (y up: `splatforge view OUT.ply --up +y`) and, with --video, a "
                             "turntable MP4.")


def _generate(args) -> None:
    from .generate import TurntableParams, build_generator, generate_image, render_turntable

    if args.output.suffix.lower() != ".ply":
        raise SplatforgeError(f"the output must be a .ply file, got {args.output}")
    if args.video is not None and args.video.suffix.lower() != ".mp4":
        raise SplatforgeError(f"the video must be an .mp4 file, got {args.video}")
    if args.video_frames < 1 or args.video_size < 16:
        raise SplatforgeError("the turntable needs at least 1 frame of at least 16x16 pixels")
    views = None
    if args.views is not None:
        views = [Path(p.strip()) for p in args.views.split(",") if p.strip()]
        if args.input is not None:
            print(f"note: --views replaces the multi-view stage; {args.input} is not used")
    elif args.input is None:
        raise SplatforgeError("give a picture of the object (splatforge generate IMAGE -o OUT.ply), "
                              "or four views of it with --views FRONT,RIGHT,BACK,LEFT")
    for folder in {args.output.parent, *([args.video.parent] if args.video else [])}:
        if not folder.is_dir():
            raise SplatforgeError(f"the output folder {folder} does not exist")
    start = time.perf_counter()
    generator = build_generator(args.preset, checkpoint=args.checkpoint, seed=args.seed, device=args.device)
    result = generate_image(args.input, generator, views=views, diffusion_model=args.diffusion_model,
                            steps=args.steps, guidance=args.guidance, seed=args.diffusion_seed,
                            precision=args.precision)
    out = result.save_ply(args.output)
    print(f"{args.input if views is None else 'four views'} -> {out}: {result.num_gaussians:,} Gaussians, "
          f"{time.perf_counter() - start:.1f} s (view it: splatforge view {out} --up +y)")
    if args.video is not None:
        video = render_turntable(result, args.video, TurntableParams(num_frames=args.video_frames,
                                                                     size=args.video_size))
        print(f"rendered {video}")
