"""Subcommands for 3D scenes: `train`, `render`, `eval` and `demo`."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from .errors import SplatforgeError

SCENE_SUFFIXES = (".ply", ".splat", ".spz", ".sog")


def _load_capture(args: argparse.Namespace, normalize: bool = True):
    from .train.data import load_capture

    test_list = None
    if getattr(args, "test_list", None) is not None:
        try:
            test_list = [line.strip() for line in Path(args.test_list).read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise SplatforgeError(f"cannot read the test list {args.test_list}: {exc.strerror}") from None
    return load_capture(args.data, downscale=args.downscale, test_every=args.test_every, test_list=test_list,
                        normalize=normalize)


def load_scene_file(path: Path):
    """Gaussians from a scene file: INRIA PLY always, the other formats once splatforge.io.scene exists."""
    if not path.exists():
        raise SplatforgeError(f"{path} does not exist")
    try:
        from .io.scene import load_scene
    except ImportError:
        from .io.ply import read_ply as load_scene
    return load_scene(path)


def _print_outputs(out: Path, names: dict[str, str]) -> None:
    for label, rel in names.items():
        if (out / rel).exists():
            print(f"  {label:<14} {out / rel}")


def _cmd_train(args: argparse.Namespace) -> None:
    from ._cli_util import dataclass_from_args
    from .train.run import RunOptions, run_training
    from .train.trainer import TrainConfig

    capture = _load_capture(args)
    cfg = dataclass_from_args(TrainConfig, args, module_options=_module_options(args.module_option))
    opts = dataclass_from_args(RunOptions, args)
    print(f"{len(capture.train)} training and {len(capture.test)} test views of "
          f"{capture.train[0].image.shape[1]}x{capture.train[0].image.shape[0]}, {len(capture.points):,} SfM points")
    result = run_training(capture, args.output, cfg, opts)
    _report_run(Path(args.output), result.metrics)


def _module_options(items: list[str]) -> dict:
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


def _cmd_render(args: argparse.Namespace) -> None:
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
        if args.capture is not None:
            from .io.colmap import read_colmap_model

            model = read_colmap_model(args.capture)
            capture_viewmats = np.stack([im.viewmat for im in model.images])
        if args.capture is not None and not args.orbit:
            import torch

            cams = [model.cameras[im.camera_id] for im in model.images]
            width, height = cams[0].width // args.downscale, cams[0].height // args.downscale
            viewmats = torch.from_numpy(capture_viewmats).float()
            ks = torch.from_numpy(np.stack([c.K for c in cams])).float()
            ks[:, :2] /= args.downscale
        else:
            width, height = args.width, args.height
            viewmats, ks = scene_orbit(args.orbit or 120, width, height, gaussians=gaussians,
                                       capture_viewmats=capture_viewmats,
                                       up=tuple(args.up) if args.up else None, fov_degrees=args.fov)
    out = Path(args.output)
    report = render_views(gaussians, viewmats, ks, width, height, out / "frames", backend=args.backend,
                          background=tuple(args.background))
    mean = sum(report.milliseconds) / len(report.milliseconds)
    print(f"{len(gaussians):,} Gaussians, {len(report.paths)} views of {width}x{height}: "
          f"{mean:.1f} ms per view ({args.backend} backend)")
    print(f"  frames         {out / 'frames'}")
    if not args.no_video:
        from .core.images import load_image

        video = write_video((load_image(p) for p in report.paths), out / "video.mp4", fps=args.fps)
        print(f"  video          {video}")


def _cmd_eval(args: argparse.Namespace) -> None:
    import json

    from .train.trainer import TrainConfig, evaluate, from_capture_frame

    capture = _load_capture(args)
    gaussians = from_capture_frame(load_scene_file(args.scene), capture.normalization)
    views = {"test": capture.test, "train": capture.train, "all": capture.train + capture.test}[args.split]
    if not views:
        raise SplatforgeError(f"the capture has no {args.split} views")
    params = gaussians.as_dict()
    scores = evaluate(params, views, TrainConfig(background=tuple(args.background)), gaussians.sh_degree)
    scores.update(split=args.split, num_views=len(views), num_gaussians=len(gaussians))
    print(f"{args.scene} on {len(views)} {args.split} views of {args.data}: "
          f"PSNR {scores['psnr']:.2f} dB, SSIM {scores['ssim']:.4f}")
    if args.json is not None:
        Path(args.json).write_text(json.dumps(scores, indent=2))
        print(f"  scores         {args.json}")


def _cmd_demo(args: argparse.Namespace) -> None:
    from .demo.capture import make_demo_capture
    from .render.video import scene_orbit, write_video
    from .train.data import load_capture
    from .train.run import RunOptions, run_training
    from .train.trainer import to_capture_frame

    out = Path(args.output)
    capture_dir = make_demo_capture(out / "capture", num_views=args.views, width=args.size, height=args.size,
                                    seed=args.seed)
    print(f"demo capture: {capture_dir} ({args.views} views of {args.size}x{args.size}, COLMAP format)")
    capture = load_capture(capture_dir)
    train_dir = out / "train"
    if train_dir.exists():
        shutil.rmtree(train_dir)
    from .train.trainer import TrainConfig

    cfg = TrainConfig(**{**DEMO_TRAIN, "seed": args.seed,
                         **({"max_steps": args.max_steps} if args.max_steps is not None else {})})
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

    args = dict(means=gaussians.means, quats=gaussians.quats, scales=gaussians.activated_scales(),
                opacities=gaussians.activated_opacities(), colors=gaussians.colors_sh(),
                sh_degree=gaussians.sh_degree, width=width, height=height)
    with torch.no_grad():
        for i in range(viewmats.shape[0]):
            rgb, _, _ = rasterization(viewmats=viewmats[i:i + 1], Ks=ks[i:i + 1], **args)
            yield rgb[0].clamp(0, 1).numpy()


# The demo trains a 256x256 capture for a few minutes: gsplat's recipe with its step schedule
# compressed about tenfold to fit the short run (refine from step 200 every 100 steps until 2,500, an
# opacity reset at 1,500, SH degree raised every 300 steps, means' rate decayed over 3,000 steps).
DEMO_TRAIN = dict(max_steps=3000, sh_degree_interval=300, refine_start_iter=200, refine_every=100,
                  refine_stop_iter=2500, reset_every=1500)


def _add_capture_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", type=Path, help="a COLMAP capture: images/ and sparse/0")
    p.add_argument("--downscale", type=int, default=1, help="use images_N/ (made and cached when missing)")
    p.add_argument("--test-every", type=int, default=8, help="hold out every Nth image for testing (0: none)")
    p.add_argument("--test-list", type=Path, default=None, help="a file naming the held-out images, one a line")


def register(sub) -> None:
    from ._cli_util import add_dataclass_options
    from .train.run import RunOptions
    from .train.trainer import TrainConfig

    p = sub.add_parser("train", help="train 3D Gaussians on a COLMAP capture (CPU)")
    _add_capture_args(p)
    p.add_argument("-o", "--output", type=Path, default=Path("out/train"))
    add_dataclass_options(p, TrainConfig)
    p.add_argument("--module-option", action="append", default=[], metavar="MODULE.KEY=VALUE",
                   help="an option of an enabled module, e.g. pose.lr=1e-3 (repeatable)")
    add_dataclass_options(p, RunOptions)
    p.set_defaults(func=_cmd_train)

    r = sub.add_parser("render", help="render a scene (PLY) along an orbit or a capture's cameras, to PNGs and MP4")
    r.add_argument("scene", type=Path, help="a scene file (PLY), or a point capture .npz with its own cameras")
    r.add_argument("-o", "--output", type=Path, default=Path("out/render"))
    r.add_argument("--capture", type=Path, default=None, help="a COLMAP capture whose cameras to render")
    r.add_argument("--downscale", type=int, default=1, help="with --capture: render at 1/N of its size")
    r.add_argument("--orbit", type=int, default=0,
                   help="render N views on an orbit (default without --capture: 120; with it: its cameras)")
    r.add_argument("--width", type=int, default=512)
    r.add_argument("--height", type=int, default=512)
    r.add_argument("--fov", type=float, default=50.0, help="orbit: horizontal field of view, degrees")
    r.add_argument("--up", type=float, nargs=3, default=None, help="orbit: world up vector (default: the "
                   "capture's, else +z)")
    r.add_argument("--background", type=float, nargs=3, default=(0.0, 0.0, 0.0))
    r.add_argument("--fps", type=int, default=30)
    r.add_argument("--no-video", action="store_true", help="PNGs only")
    r.add_argument("--opacity", type=float, default=0.8, help="point capture: opacity of every point's Gaussian")
    r.add_argument("--backend", default="auto", choices=["auto", "cpu", "torch", "gsplat"])
    r.set_defaults(func=_cmd_render)

    e = sub.add_parser("eval", help="score a scene (PLY) against a capture's views: PSNR and SSIM")
    e.add_argument("scene", type=Path)
    _add_capture_args(e)
    e.add_argument("--split", choices=["test", "train", "all"], default="test")
    e.add_argument("--background", type=float, nargs=3, default=(0.0, 0.0, 0.0))
    e.add_argument("--json", type=Path, default=None, help="also write the scores here")
    e.set_defaults(func=_cmd_eval)

    d = sub.add_parser("demo", help="make a built-in capture, train on it for a few minutes, write PLY, video, plots")
    d.add_argument("-o", "--output", type=Path, default=Path("out/demo"))
    d.add_argument("--views", type=int, default=48)
    d.add_argument("--size", type=int, default=256, help="image width and height")
    d.add_argument("--max-seconds", type=float, default=150.0, help="training time budget")
    d.add_argument("--max-steps", type=int, default=None, help=f"default {DEMO_TRAIN['max_steps']}")
    d.add_argument("--eval-every", type=int, default=0)
    d.add_argument("--orbit-frames", type=int, default=90)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=_cmd_demo)
