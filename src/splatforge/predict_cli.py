"""`splatforge predict` and `splatforge export-onnx`: thin layers over splatforge.predict."""

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Optional

from ._cli_util import Commands, flattened
from .errors import SplatforgeError

Preset = Literal["default", "small"]  # splatforge.predict.sharp.presets.PRESETS (a test keeps them equal)


def _image_suffixes() -> set[str]:
    """Extensions Pillow can open (plus HEIC/HEIF), lower case, as ml-sharp collects images."""
    from PIL import Image

    Image.init()
    return {ext.lower() for ext, fmt in Image.registered_extensions().items()
            if fmt in Image.OPEN} | {".heic", ".heif"}


def _model_choice():
    @dataclass
    class ModelChoice:
        checkpoint: Optional[Path] = None  # a SHARP state dict (default: the official checkpoint, downloaded once)
        preset: Preset = "default"  # network size: the official 'default', or 'small' for tests
        seed: Optional[int] = None  # random weights from this seed instead of a checkpoint (testing)

    return ModelChoice


def _predict_options():
    import tyro

    from .predict.render import TrajectoryParams

    ModelChoice = _model_choice()

    @dataclass
    class PredictOptions:
        input: tyro.conf.Positional[Path]  # an image file or a directory of images
        output: Annotated[Path, tyro.conf.arg(aliases=("-o",))]  # output directory
        model: flattened(ModelChoice) = field(default_factory=ModelChoice)
        # run the network in torch, or in ONNX Runtime (exported on the fly to OUT/model.onnx unless
        # --onnx-model is given)
        backend: Literal["torch", "onnx"] = "torch"
        onnx_model: Optional[Path] = None  # an ONNX file from `splatforge export-onnx` (with --backend onnx)
        device: Literal["cpu", "cuda", "mps"] = "cpu"  # torch device
        focal_length_px: Optional[float] = None  # focal length in pixels of the input image (default: from EXIF)
        render: bool = False  # also render a novel-view MP4 and a depth MP4 (CPU rasterizer)
        render_steps: int = TrajectoryParams.num_steps  # frames per video

    return PredictOptions


def _export_options():
    import tyro

    ModelChoice = _model_choice()

    @dataclass
    class ExportOptions:
        output: Annotated[Path, tyro.conf.arg(aliases=("-o",))]  # the .onnx file to write
        model: flattened(ModelChoice) = field(default_factory=ModelChoice)
        fp16: bool = False  # store the weights as float16

    return ExportOptions


def register(commands: Commands) -> None:
    """`predict` and `export-onnx`."""
    commands.add("predict", "one photo (or a folder of photos) -> 3D Gaussians with Apple's SHARP",
                 _predict_options, _predict,
                 description="Predict 3D Gaussians from photos with the SHARP network; writes one SHARP-layout "
                             "PLY per image (and, with --render, novel-view videos).")
    commands.add("export-onnx", "export the SHARP network to ONNX", _export_options, _export)


def _image_paths(source: Path) -> list[Path]:
    if not source.exists():
        raise SplatforgeError(f"input not found: {source}")
    if source.is_file():
        return [source]
    suffixes = _image_suffixes()
    paths = sorted(p for p in source.rglob("*") if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in suffixes)
    if not paths:
        raise SplatforgeError(f"no images in {source} (looked for files ending in "
                              f".jpg, .png, .heic, .tif, ... in it and its subdirectories)")
    return paths


def _predict(args) -> None:
    from .predict import build_predictor, predict_image, save_ply
    from .predict.outputs import output_paths

    paths = _image_paths(args.input)
    outputs = output_paths(paths, args.input if args.input.is_dir() else args.input.parent, args.output)
    predictor = build_predictor(args.model.preset, checkpoint=args.model.checkpoint, seed=args.model.seed,
                                device=args.device)
    if args.backend == "onnx":
        from .predict.onnx import export_onnx, load_onnx_predictor

        onnx_path = args.onnx_model
        if onnx_path is None:
            onnx_path = export_onnx(predictor, args.output / "model.onnx")
            print(f"exported the network to {onnx_path}")
        predictor = load_onnx_predictor(onnx_path)
    args.output.mkdir(parents=True, exist_ok=True)
    failures = []
    for i, (path, ply_path) in enumerate(zip(paths, outputs), 1):
        start = time.perf_counter()
        try:
            prediction = predict_image(path, predictor, focal_length_px=args.focal_length_px,
                                       backend=args.backend)
        except SplatforgeError as err:
            if len(paths) == 1:
                raise
            failures.append(path)
            print(f"[{i}/{len(paths)}] skipped {path}: {err}", file=sys.stderr)
            continue
        ply_path.parent.mkdir(parents=True, exist_ok=True)
        out = save_ply(prediction, ply_path)
        seconds = time.perf_counter() - start
        print(f"[{i}/{len(paths)}] {path} -> {out}: {prediction.num_gaussians:,} Gaussians, "
              f"f = {prediction.focal_length_px:.1f} px, {seconds:.1f} s")
        if args.render:
            from .predict.render import TrajectoryParams, render_trajectory_videos

            video, depth = render_trajectory_videos(
                prediction, ply_path.with_suffix(".mp4"),
                TrajectoryParams(num_steps=args.render_steps))
            print(f"    rendered {video} and {depth}")
    if failures:
        raise SplatforgeError(f"{len(failures)} of {len(paths)} inputs failed (the others were "
                              f"written): {', '.join(str(p) for p in failures[:5])}")


def _export(args) -> None:
    from .predict import build_predictor
    from .predict.onnx import export_onnx

    predictor = build_predictor(args.model.preset, checkpoint=args.model.checkpoint, seed=args.model.seed)
    out = export_onnx(predictor, args.output, fp16=args.fp16)
    extra = out.with_name(out.name + ".data")
    print(f"wrote {out}" + (f" and {extra}" if extra.exists() else ""))
