"""Subcommands for 3D scenes: `train`, `render`, `eval` and `demo`."""

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Optional

from ._cli_util import Commands, flattened
from .errors import SplatforgeError

Backend = Literal["auto", "cpu", "torch"]  # render: scenes are rendered on the CPU (auto is cpu; torch: the reference)

SCENE_SUFFIXES = (".ply", ".splat", ".spz", ".sog")


def _capture_options():
    """The capture options of train and eval; defaults: the library's (splatforge.capture.options)."""
    from .capture.options import CaptureOptions as Library

    @dataclass
    class CaptureOptions:
        # shrink photos by this factor (COLMAP: images_N/, made and cached when missing); default: by the
        # smallest factor that brings the long side to at most 1000 pixels
        downscale: Optional[int] = Library.downscale
        # hold out every Nth image for testing (0: none); default: the capture's own split (Blender's
        # test json, a transforms.json's test_filenames), else every 8th
        test_every: Optional[int] = Library.test_every
        # a file naming the held-out images, one a line: as the capture writes them, or bare file names
        test_list: Optional[Path] = Library.test_list
        # transforms.json and Blender: leave out frames whose image file is missing
        skip_missing: bool = Library.skip_missing

    return CaptureOptions


def _load_capture(data: Path, opts=None, **kwargs):
    """The capture at `data` (any format splatforge.capture reads), split into training and test views
    as `opts` (CaptureOptions) says (None: the library's defaults); `kwargs` go to load_capture. Every
    subcommand loads its capture through here."""
    from .capture import load_capture

    if opts is None:
        return load_capture(data, **kwargs)
    test_list = None
    if opts.test_list is not None:
        try:
            test_list = [line.strip() for line in Path(opts.test_list).read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise SplatforgeError(f"cannot read the test list {opts.test_list}: {exc.strerror}") from None
    return load_capture(data, downscale=opts.downscale, test_every=opts.test_every, test_list=test_list,
                        skip_missing=opts.skip_missing, **kwargs)


def load_scene_file(path: Path):
    """Gaussians from a scene file in any format splatforge reads (see splatforge.io.scene)."""
    from .io.scene import load_scene

    if not path.exists():
        raise SplatforgeError(f"{path} does not exist")
    return load_scene(path)


def _print_outputs(out: Path, names: dict[str, str]) -> None:
    for label, rel in names.items():
        if (out / rel).exists():
            print(f"  {label:<14} {out / rel}")


def _train_options():
    import tyro

    from .capture.options import INIT_CHOICES
    from .capture.options import CaptureOptions as Library
    from .train.run import RunOptions
    from .train.trainer import TrainConfig

    CaptureOptions = _capture_options()
    TrainInit = Literal[tuple(c for c in INIT_CHOICES if c != "none")]  # training needs starting points

    @dataclass
    class TrainOptions:
        # a capture: COLMAP (images/ and sparse/0), a transforms.json (or its folder), a Blender scene, or
        # a folder of photos or a video (structure from motion runs first, into OUTPUT/capture)
        data: tyro.conf.Positional[Path]
        output: Annotated[Path, tyro.conf.arg(aliases=("-o",))] = Path("out/train")  # output folder
        capture: flattened(CaptureOptions) = field(default_factory=CaptureOptions)
        # starting points: auto (the capture's SfM points, else triangulated from the photos with the poses
        # fixed, else random in the cameras' common view), sfm, triangulate or random
        init: TrainInit = Library.init
        num_random_points: int = Library.num_random_points  # with --init random (or auto falling back to it)
        config: flattened(TrainConfig) = field(default_factory=TrainConfig)
        # an option of an enabled module, MODULE.KEY=VALUE, e.g. pose.lr=1e-3
        module_option: tyro.conf.UseAppendAction[tuple[str, ...]] = ()
        run: flattened(RunOptions) = field(default_factory=RunOptions)

    return TrainOptions


def _cmd_train(opts) -> None:
    from dataclasses import replace

    from .train.run import run_training

    from .capture.sfm import ensure_posed_capture

    cfg = replace(opts.config, module_options=_module_options(opts.module_option))
    # a folder of bare photos or a video: structure from motion first, into OUT/capture (reused later)
    data = ensure_posed_capture(opts.data, opts.output)
    # the photos' transparent parts take the training background; triangulated points are cached
    # beside the run's outputs
    capture = _load_capture(data, opts.capture, init=opts.init, num_random_points=opts.num_random_points,
                            background=cfg.background, cache_dir=opts.output)
    sizes = sorted({f"{v.image.shape[1]}x{v.image.shape[0]}" for v in capture.train + capture.test})
    print(f"{len(capture.train)} training and {len(capture.test)} test views of {', '.join(sizes)} "
          f"({capture.format}), {len(capture.points):,} {capture.points_source} points")
    result = run_training(capture, opts.output, cfg, opts.run)
    _report_run(Path(opts.output), result.metrics)


def _module_options(items) -> dict:
    """["pose.lr=1e-3", "bilateral.grid_shape=8,8,4"] -> {"pose": {"lr": 0.001}, ...}: numbers, booleans,
    comma-separated numbers (a list) or text."""
    options: dict = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        module, dot, name = key.partition(".")
        if not (sep and dot and module and name):
            raise SplatforgeError(f"--module-option takes MODULE.KEY=VALUE, got {item!r}")
        options.setdefault(module, {})[name] = _option_value(text)
    return options


def _option_value(text: str):
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    parts = text.split(",")
    try:
        numbers = [int(p) if p.strip().lstrip("-").isdigit() else float(p) for p in parts]
    except ValueError:
        return text
    return numbers if len(parts) > 1 else numbers[0]


def _report_run(out: Path, m: dict) -> None:
    test = m.get("test") or {}
    line = f"{m['steps']} steps, {m['num_gaussians']:,} Gaussians"
    if test:
        line += f": test PSNR {test['psnr']:.2f} dB, SSIM {test['ssim']:.4f}"
    if m.get("steps_per_second"):
        line += f" ({m['steps_per_second']:.1f} steps/s)"
    print(line)
    _print_outputs(out, {"scene": "point_cloud.ply", "metrics": "metrics.json", "plot": "plots/training.png",
                         "checkpoints": "ckpts", "stats": "stats", "test renders": "renders"})


def _render_options():
    import tyro

    from .capture.options import CaptureOptions

    @dataclass
    class RenderOptions:
        # a splat file (.ply, .compressed.ply, .splat, .spz, SOG) or a point capture .npz with its own cameras
        scene: tyro.conf.Positional[Path]
        output: Annotated[Path, tyro.conf.arg(aliases=("-o",))] = Path("out/render")  # output folder
        capture: Optional[Path] = None  # a capture (any format train reads) whose cameras to render
        # with --capture: render at 1/N of its photos' size (default: the size training uses)
        downscale: Optional[int] = CaptureOptions.downscale
        orbit: int = 0  # render N views on an orbit (0: 120 without --capture; with it: its cameras)
        width: int = 512  # orbit: image width
        height: int = 512  # orbit: image height
        fov: float = 50.0  # orbit: horizontal field of view, degrees
        up: Optional[tuple[float, float, float]] = None  # orbit: world up vector (default: the capture's, else +z)
        background: tuple[float, float, float] = (0.0, 0.0, 0.0)  # RGB behind the scene, 0-1
        fps: int = 30  # video frame rate
        video: bool = True  # also write video.mp4 (--no-video: PNGs only)
        opacity: float = 0.8  # point capture: opacity of every point's Gaussian
        backend: Backend = "auto"  # rasterizer backend

    return RenderOptions


def _cmd_render(args) -> None:
    import numpy as np

    from .render.stills import render_views
    from .render.video import scene_orbit, write_video

    if args.scene.suffix == ".npz":  # a point capture brings its own cameras
        from .io.points_capture import load_point_capture

        capture = load_point_capture(args.scene)
        gaussians = capture.to_gaussians(opacity=args.opacity)
        viewmats, ks, width, height = capture.viewmats, capture.Ks, capture.width, capture.height
    else:
        gaussians = load_scene_file(args.scene)
        capture_viewmats = None
        if args.capture is not None:  # its cameras in its own frame, the frame exported scenes are in
            capture = _load_capture(args.capture, downscale=args.downscale, normalize=False, init="none",
                                    background=args.background)
            capture_viewmats = capture.model_viewmats()
            views = sorted(capture.train + capture.test, key=lambda v: v.name)  # model_viewmats' order
        if args.capture is not None and not args.orbit:
            import torch

            sizes = {v.image.shape[:2] for v in views}
            if len(sizes) > 1:
                raise SplatforgeError(f"{args.capture} has photos of {len(sizes)} sizes; render its cameras one "
                                      "size at a time is not supported: use --orbit")
            height, width = views[0].image.shape[:2]
            viewmats = torch.from_numpy(capture_viewmats).float()
            ks = torch.from_numpy(np.stack([v.K for v in views])).float()
        else:
            width, height = args.width, args.height
            viewmats, ks = scene_orbit(args.orbit or 120, width, height, gaussians=gaussians,
                                       capture_viewmats=capture_viewmats,
                                       up=args.up, fov_degrees=args.fov)
    out = Path(args.output)
    report = render_views(gaussians, viewmats, ks, width, height, out / "frames", backend=args.backend,
                          background=args.background)
    mean = sum(report.milliseconds) / len(report.milliseconds)
    print(f"{len(gaussians):,} Gaussians, {len(report.paths)} views of {width}x{height}: "
          f"{mean:.1f} ms per view ({args.backend} backend)")
    print(f"  frames         {out / 'frames'}")
    if args.video:
        from .core.images import load_image

        video = write_video((load_image(p) for p in report.paths), out / "video.mp4", fps=args.fps)
        print(f"  video          {video}")


def _eval_options():
    import tyro

    CaptureOptions = _capture_options()

    @dataclass
    class EvalOptions:
        scene: tyro.conf.Positional[Path]  # the scene file to score (.ply, .compressed.ply, .splat, .spz or SOG)
        data: tyro.conf.Positional[Path]  # a capture (any format train reads)
        capture: flattened(CaptureOptions) = field(default_factory=CaptureOptions)
        split: Literal["test", "train", "all"] = "test"  # which of the capture's views to score
        background: tuple[float, float, float] = (0.0, 0.0, 0.0)  # RGB behind the scene, 0-1
        json: Optional[Path] = None  # also write the scores here

    return EvalOptions


def _cmd_eval(args) -> None:
    import json

    from .train.trainer import TrainConfig, evaluate, from_capture_frame

    capture = _load_capture(args.data, args.capture, init="none", background=args.background)
    gaussians = from_capture_frame(load_scene_file(args.scene), capture.normalization)
    views = {"test": capture.test, "train": capture.train, "all": capture.train + capture.test}[args.split]
    if not views:
        raise SplatforgeError(f"the capture has no {args.split} views")
    params = gaussians.as_dict()
    scores = evaluate(params, views, TrainConfig(background=args.background), gaussians.sh_degree)
    scores.update(split=args.split, num_views=len(views), num_gaussians=len(gaussians))
    print(f"{args.scene} on {len(views)} {args.split} views of {args.data}: "
          f"PSNR {scores['psnr']:.2f} dB, SSIM {scores['ssim']:.4f}")
    if args.json is not None:
        Path(args.json).write_text(json.dumps(scores, indent=2))
        print(f"  scores         {args.json}")


def _demo_options():
    import tyro

    @dataclass
    class DemoOptions:
        output: Annotated[Path, tyro.conf.arg(aliases=("-o",))] = Path("out/demo")  # output folder
        views: int = 48  # cameras of the built-in capture
        size: int = 256  # image width and height
        max_seconds: float = 150.0  # training time budget
        # training steps, with DEMO_TRAIN's compressed schedule (default: the schedule fitted to max_seconds)
        max_steps: Optional[int] = None
        eval_every: int = 0  # steps between evaluations on the test views (0: only at the end)
        orbit_frames: int = 90  # frames of the orbit video
        seed: int = 0
        quiet: bool = False  # no progress bar

    return DemoOptions


def _cmd_demo(args) -> None:
    from .demo.capture import make_demo_capture
    from .render.video import scene_orbit, write_video
    from .train.run import RunOptions, run_training
    from .train.trainer import to_capture_frame

    out = Path(args.output)
    capture_dir = make_demo_capture(out / "capture", num_views=args.views, width=args.size, height=args.size,
                                    seed=args.seed)
    print(f"demo capture: {capture_dir} ({args.views} views of {args.size}x{args.size}, COLMAP format)")
    capture = _load_capture(capture_dir)
    train_dir = out / "train"
    if train_dir.exists():
        shutil.rmtree(train_dir)
    from .train.trainer import TrainConfig

    # the schedule fitted to the time budget, so the demo ends converged on a slow machine too
    cfg = TrainConfig(seed=args.seed) if args.max_steps is None else \
        TrainConfig(**{**DEMO_TRAIN, "seed": args.seed, "max_steps": args.max_steps})
    result = run_training(capture, train_dir, cfg, RunOptions(max_seconds=args.max_seconds,
                                                              eval_every=args.eval_every, progress=not args.quiet))
    _report_run(train_dir, result.metrics)
    scene = to_capture_frame(result.gaussians, capture.normalization)
    viewmats, ks = scene_orbit(args.orbit_frames, args.size, args.size,
                               capture_viewmats=capture.model_viewmats(), fov_degrees=55.0)
    video = write_video(_frames(scene, viewmats, ks, args.size, args.size), out / "orbit.mp4", fps=30)
    print(f"  orbit video    {video}")
    print("look at it:")
    print(f"  splatforge view {train_dir / 'point_cloud.ply'}   (or drop the PLY into any 3DGS viewer, "
          "e.g. SuperSplat)")
    print(f"  splatforge render {train_dir / 'point_cloud.ply'} --capture {capture_dir} -o {out / 'renders'}")


def _frames(gaussians, viewmats, ks, width, height):
    import torch

    from .raster import rasterization

    args = dict(**gaussians.rasterization_args(), width=width, height=height)
    with torch.no_grad():
        for i in range(viewmats.shape[0]):
            rgb, _, _ = rasterization(viewmats=viewmats[i:i + 1], Ks=ks[i:i + 1], **args)
            yield rgb[0].clamp(0, 1).numpy()


# `splatforge demo --max-steps N`: gsplat's recipe with its step schedule compressed about tenfold to
# fit a short run (refine from step 200 every 100 steps until 2,500, an opacity reset at 1,500, SH
# degree raised every 300 steps, means' rate decayed over 3,000 steps). Without --max-steps the demo
# fits the schedule to its time budget instead (splatforge.train.schedule).
DEMO_TRAIN = dict(max_steps=3000, sh_degree_interval=300, refine_start_iter=200, refine_every=100,
                  refine_stop_iter=2500, reset_every=1500)


def register(commands: Commands) -> None:
    """`train`, `render`, `eval` and `demo`."""
    commands.add("train", "train 3D Gaussians on a capture (COLMAP, transforms.json, Blender), photos or a video (CPU)",
                 _train_options, _cmd_train)
    commands.add("render", "render a scene (any splat format) along an orbit or a capture's cameras, to PNGs and MP4",
                 _render_options, _cmd_render)
    commands.add("eval", "score a scene (any splat format) against a capture's views: PSNR and SSIM",
                 _eval_options, _cmd_eval)
    commands.add("demo", "make a built-in capture, train on it for a few minutes, write PLY, video, plots",
                 _demo_options, _cmd_demo)
