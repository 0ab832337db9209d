"""`splatforge predict` and `splatforge export-onnx`: thin layers over splatforge.predict."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .errors import SplatforgeError



def _image_suffixes() -> set[str]:
    """Extensions Pillow can open (plus HEIC/HEIF), lower case, as ml-sharp collects images."""
    from PIL import Image

    Image.init()
    return {ext.lower() for ext, fmt in Image.registered_extensions().items()
            if fmt in Image.OPEN} | {".heic", ".heif"}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="one photo (or a folder of photos) -> 3D Gaussians with Apple's SHARP",
        description="Predict 3D Gaussians from photos with the SHARP network; writes one "
                    "SHARP-layout PLY per image (and, with --render, novel-view videos).")
    p.add_argument("input", type=Path, help="an image file or a directory of images")
    p.add_argument("-o", "--output", type=Path, required=True, help="output directory")
    _model_arguments(p)
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                   help="run the network in torch, or in ONNX Runtime (exported on the fly "
                        "to OUT/model.onnx unless --onnx-model is given)")
    p.add_argument("--onnx-model", type=Path, default=None,
                   help="an ONNX file from `splatforge export-onnx` (with --backend onnx)")
    p.add_argument("--device", choices=("cpu", "cuda", "mps"), default="cpu")
    p.add_argument("--focal-length-px", type=float, default=None,
                   help="focal length in pixels of the input image (default: from EXIF)")
    p.add_argument("--render", action="store_true",
                   help="also render a novel-view MP4 and a depth MP4 (CPU rasterizer)")
    p.add_argument("--render-steps", type=int, default=60, help="frames per video")
    p.set_defaults(func=_predict)

    e = subparsers.add_parser("export-onnx", help="export the SHARP network to ONNX")
    _model_arguments(e)
    e.add_argument("-o", "--output", type=Path, required=True, help="the .onnx file to write")
    e.add_argument("--fp16", action="store_true", help="store the weights as float16")
    e.set_defaults(func=_export)


def _model_arguments(p: argparse.ArgumentParser) -> None:
    from .predict.sharp.presets import PRESETS

    p.add_argument("--checkpoint", type=Path, default=None,
                   help="a SHARP state dict (default: the official checkpoint, downloaded once)")
    p.add_argument("--preset", choices=PRESETS, default="default",
                   help="network size: the official 'default', or 'small' for tests")
    p.add_argument("--seed", type=int, default=None,
                   help="random weights from this seed instead of a checkpoint (testing)")


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


def _predict(args: argparse.Namespace) -> int:
    from .predict import build_predictor, predict_image, save_ply

    paths = _image_paths(args.input)
    predictor = build_predictor(args.preset, checkpoint=args.checkpoint, seed=args.seed,
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
    for i, path in enumerate(paths, 1):
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
        out = save_ply(prediction, args.output / f"{path.stem}.ply")
        seconds = time.perf_counter() - start
        print(f"[{i}/{len(paths)}] {path} -> {out}: {prediction.num_gaussians:,} Gaussians, "
              f"f = {prediction.focal_length_px:.1f} px, {seconds:.1f} s")
        if args.render:
            from .predict.render import TrajectoryParams, render_trajectory_videos

            video, depth = render_trajectory_videos(
                prediction, args.output / f"{path.stem}.mp4",
                TrajectoryParams(num_steps=args.render_steps))
            print(f"    rendered {video} and {depth}")
    if failures:
        raise SplatforgeError(f"{len(failures)} of {len(paths)} inputs failed (the others were "
                              f"written): {', '.join(str(p) for p in failures[:5])}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .predict import build_predictor
    from .predict.onnx import export_onnx

    predictor = build_predictor(args.preset, checkpoint=args.checkpoint, seed=args.seed)
    out = export_onnx(predictor, args.output, fp16=args.fp16)
    extra = out.with_name(out.name + ".data")
    print(f"wrote {out}" + (f" and {extra}" if extra.exists() else ""))
    return 0
