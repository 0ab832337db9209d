"""`splatforge predict` and `splatforge export-onnx`: thin layers over splatforge.predict."""

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Optional

from ._cli_util import Commands, flattened
from .errors import SplatforgeError

Preset = Literal["default", "small"]  # splatforge.predict.sharp.presets.PRESETS (a test keeps them equal)
Precision = Literal["fp32", "fp16", "int8"]  # splatforge.predict.onnx.PRECISIONS


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
        # run in torch, or in ONNX Runtime (the whole pipeline, exported on the fly to OUT/model.onnx
        # unless --onnx-model is given)
        backend: Literal["torch", "onnx"] = "torch"
        onnx_model: Optional[Path] = None  # an ONNX file from `splatforge export-onnx` (with --backend onnx; then no network is built)
        precision: Precision = "fp32"  # weights of the ONNX model exported on the fly (with --backend onnx)
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
        # the whole pipeline: photo [1,3,H,W] + focal_length_px [1] in, metric Gaussians out (means,
        # scales, quaternions, colors, opacities); without it, the network alone
        full: bool = False
        # fp32; fp16 weights (half the size, float32 maths); int8 (dynamically quantized MatMul weights)
        precision: Precision = "fp32"
        # ort: each ViT attention as ONNX Runtime's MultiHeadAttention (a flash attention, faster on its
        # CPU); standard: MatMul/Softmax only, for runtimes without ONNX Runtime's contrib ops
        attention: Literal["ort", "standard"] = "ort"

    return ExportOptions


def _coreml_options():
    import tyro

    ModelChoice = _model_choice()

    @dataclass
    class CoremlOptions:
        output: Annotated[Path, tyro.conf.arg(aliases=("-o",))]  # the .mlpackage to write
        model: flattened(ModelChoice) = field(default_factory=ModelChoice)
        # fp16: float16 weights and maths (Neural Engine); fp32: float32 (GPU/CPU, closest to torch)
        precision: Literal["fp16", "fp32"] = "fp16"

    return CoremlOptions


def register(commands: Commands) -> None:
    """`predict` and `export-onnx`."""
    commands.add("predict", "one photo (or a folder of photos) -> 3D Gaussians with Apple's SHARP",
                 _predict_options, _predict,
                 description="Predict 3D Gaussians from photos with the SHARP network; writes one SHARP-layout "
                             "PLY per image (and, with --render, novel-view videos).")
    commands.add("export-onnx", "export SHARP to ONNX: the network, or with --full photo -> metric Gaussians",
                 _export_options, _export)
    commands.add("export-coreml", "export the SHARP network to Core ML (.mlpackage, for iOS/macOS)",
                 _coreml_options, _export_coreml)


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
    if args.backend == "onnx":
        from .predict.onnx import export_onnx, load_onnx_predictor

        onnx_path = args.onnx_model
        if onnx_path is None:  # the model options say which network to export
            network = build_predictor(args.model.preset, checkpoint=args.model.checkpoint,
                                      seed=args.model.seed)
            onnx_path = export_onnx(network, args.output / "model.onnx", full=True,
                                    precision=args.precision)
            del network
            print(f"exported the pipeline to {onnx_path}")
        predictor = load_onnx_predictor(onnx_path)
    else:
        predictor = build_predictor(args.model.preset, checkpoint=args.model.checkpoint,
                                    seed=args.model.seed, device=args.device)
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
    out = export_onnx(predictor, args.output, full=args.full, precision=args.precision,
                      ort_attention=args.attention == "ort")
    extra = out.with_name(out.name + ".data")
    print(f"wrote {out}" + (f" and {extra}" if extra.exists() else ""))


def _export_coreml(args) -> None:
    from .predict import build_predictor
    from .predict.coreml import export_coreml, require_coremltools, summarize_coreml

    require_coremltools()  # before building a network that could take minutes
    predictor = build_predictor(args.model.preset, checkpoint=args.model.checkpoint, seed=args.model.seed)
    start = time.perf_counter()
    out = export_coreml(predictor, args.output, precision=args.precision)
    summary = summarize_coreml(out)
    print(f"wrote {out} ({summary.total_bytes / 2**20:,.1f} MiB, {args.precision}) in "
          f"{time.perf_counter() - start:.0f} s")
    for name, (shape, dtype) in {**summary.inputs, **summary.outputs}.items():
        kind = "input " if name in summary.inputs else "output"
        print(f"  {kind} {name} {list(shape)} {dtype}")
    if summary.cpu_only:
        print("  ops that may run on the CPU only: "
              + ", ".join(f"{op} x{n}" for op, n in sorted(summary.cpu_only.items())))
