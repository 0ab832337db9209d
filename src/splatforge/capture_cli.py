"""`splatforge capture INPUT -o CAPTURE`: structure from motion (pycolmap, CPU) from photos or a video."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from splatforge._cli_util import Commands, flattened


def _capture_options():
    import tyro

    from splatforge.capture.sfm import SfmConfig

    @dataclass
    class CaptureOptions:
        input: tyro.conf.Positional[Path]  # a folder of photos (or of an images/ folder) or a video file
        output: Annotated[Path, tyro.conf.arg(aliases=("-o",))] = Path("out/capture")  # the capture folder to create
        config: flattened(SfmConfig) = field(default_factory=SfmConfig)

    return CaptureOptions


def _cmd_capture(opts) -> None:
    from splatforge.capture.sfm import run_sfm

    report = run_sfm(opts.input, opts.output, opts.config)
    print(report.format())
    print(f"train on it: splatforge train {opts.output}")


def register(commands: Commands) -> None:
    """Add `capture` to the `splatforge` subcommands."""
    commands.add(
        "capture", "structure from motion: photos or a video -> a posed COLMAP capture (pycolmap, CPU)",
        _capture_options, _cmd_capture,
        description="Make a COLMAP capture (OUTPUT/images, OUTPUT/sparse/0, OUTPUT/sfm_report.json) from a folder "
                    "of photos or a video: SIFT features, exhaustive matching for up to --exhaustive-limit photos "
                    "(sequential beyond, and for video), incremental mapping with global mapping as a second try. "
                    "Video: the sharpest frame of each of --num-frames windows. Prints which images registered.")
