"""Compare a SHARP Core ML package (from `splatforge export-coreml`) with the torch network, on a Mac.

Core ML runs only on macOS, so this is the check Linux cannot do. It loads the package with
coremltools, runs it and the torch network with the same weights on the same input, and prints the
largest and mean differences of the raw outputs and of the metric Gaussians after unprojection.
With --plan it also prints where Core ML's compute plan puts each op (Neural Engine, GPU, CPU).

    pip install 'splatforge[coreml]'
    splatforge export-coreml -o small.mlpackage --preset small \\
        --checkpoint tests/predict/data/sharp_small_state_dict.pt --precision fp32
    python tools/coreml_compare.py small.mlpackage --plan

For the small preset the input is the parity fixture's (tests/predict/data/sharp_small_io.npz) and
the outputs are also compared with ml-sharp's, stored in that file. For another network, pass the
same --preset and --checkpoint (or --seed) it was exported with; the input is then a seeded
random image at the package's resolution.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "tests" / "predict" / "data"
COMPUTE_UNITS = {"all": "ALL", "cpu-only": "CPU_ONLY", "cpu-and-gpu": "CPU_AND_GPU",
                 "cpu-and-ne": "CPU_AND_NE"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run a SHARP .mlpackage and the torch network on the same input (macOS) and "
                    "print the largest differences.")
    parser.add_argument("package", type=Path, help="the .mlpackage from `splatforge export-coreml`")
    parser.add_argument("--preset", choices=("default", "small"), default="small",
                        help="the network the package was exported from (default: small)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="its weights (default for --preset small: the parity fixture's, "
                             "tests/predict/data/sharp_small_state_dict.pt)")
    parser.add_argument("--seed", type=int, default=None,
                        help="random weights from this seed, if the package was exported with --seed")
    parser.add_argument("--fixtures", type=Path, default=DATA / "sharp_small_io.npz",
                        help="parity fixture with the input and ml-sharp's outputs")
    parser.add_argument("--compute-units", choices=sorted(COMPUTE_UNITS), default="all",
                        help="Core ML compute units to run on (default: all)")
    parser.add_argument("--plan", action="store_true",
                        help="also print which device Core ML's compute plan picks for each op type")
    return parser.parse_args(argv)


def differences(name: str, got, expected) -> str:
    import numpy as np

    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    diff = np.abs(got - expected)
    scale = max(float(np.abs(expected).max()), 1e-12)
    return (f"{name:<28} {diff.max():>11.3e} {diff.mean():>11.3e} {diff.max() / scale:>11.3e}  "
            f"(|expected| up to {scale:.3g})")


def print_table(title: str, rows: list[str]) -> None:
    print(f"\n{title}\n{'output':<28} {'max abs':>11} {'mean abs':>11} {'max rel':>11}")
    for line in rows:
        print(line)


def print_compute_plan(mlmodel, units) -> None:
    from collections import Counter, defaultdict

    from coremltools.models.compute_plan import MLComputePlan

    plan = MLComputePlan.load_from_path(path=mlmodel.get_compiled_model_path(), compute_units=units)
    by_device: dict[str, Counter] = defaultdict(Counter)
    not_everywhere: Counter = Counter()

    def walk(block):
        for op in block.operations:
            if op.operator_name == "const":
                continue
            usage = plan.get_compute_device_usage_for_mlprogram_operation(op)
            device = type(usage.preferred_compute_device).__name__ if usage else "unknown"
            by_device[device][op.operator_name] += 1
            supported = {type(d).__name__ for d in usage.supported_compute_devices} if usage else set()
            if "MLNeuralEngineComputeDevice" not in supported:
                not_everywhere[op.operator_name] += 1
            for inner in op.blocks:
                walk(inner)

    walk(plan.model_structure.program.functions["main"].block)
    print("\ncompute plan (preferred device: op type x count)")
    for device, ops in sorted(by_device.items()):
        print(f"  {device}: " + ", ".join(f"{k} x{v}" for k, v in ops.most_common()))
    print("ops the Neural Engine cannot run: "
          + (", ".join(f"{k} x{v}" for k, v in not_everywhere.most_common()) or "none"))


def main(argv=None) -> int:
    args = parse_args(argv)
    import numpy as np
    import torch

    from splatforge.errors import SplatforgeError
    from splatforge.predict import build_predictor
    from splatforge.predict.api import unproject
    from splatforge.predict.coreml import (
        check_sharp_package,
        package_fields,
        require_coremltools,
    )
    from splatforge.predict.sharp import SharpGaussians
    from splatforge.predict.unproject import covariances

    try:
        ct = require_coremltools()
        fields = package_fields(check_sharp_package(args.package))
        size = int(fields["internal_resolution"])
        checkpoint = args.checkpoint
        if checkpoint is None and args.seed is None and args.preset == "small":
            checkpoint = DATA / "sharp_small_state_dict.pt"
        model = build_predictor(args.preset, checkpoint=checkpoint, seed=args.seed)
    except SplatforgeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if model.internal_resolution() != size:
        print(f"error: the package takes {size}x{size} images, the {args.preset} network "
              f"{model.internal_resolution()}: pass the --preset it was exported from", file=sys.stderr)
        return 2

    reference = dict(np.load(args.fixtures)) if args.fixtures.is_file() else {}
    if reference and reference["network_input"].shape[-1] == size:
        image, factor = reference["network_input"], reference["disparity_factor"]
        f_px = float(reference["f_px"])
        image_size = (reference["image"].shape[1], reference["image"].shape[0])
        print(f"input: the parity fixture {args.fixtures}")
    else:
        reference = {}
        image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).numpy()
        factor = np.array([0.9], np.float32)
        f_px, image_size = 0.9 * size, (size, size)
        print(f"input: a seeded random {size}x{size} image")

    units = getattr(ct.ComputeUnit, COMPUTE_UNITS[args.compute_units])
    mlmodel = ct.models.MLModel(str(args.package), compute_units=units)
    got = mlmodel.predict({"image": image.astype(np.float32),
                           "disparity_factor": factor.astype(np.float32)})
    with torch.no_grad():
        expected = model(torch.from_numpy(image), torch.from_numpy(factor))
    print(f"package: {args.package} ({fields.get('precision', '?')}), compute units "
          f"{args.compute_units}")

    raw = SharpGaussians(*(torch.from_numpy(np.asarray(got[name], np.float32))
                           for name in SharpGaussians._fields))
    rows = [differences(name, getattr(raw, name), getattr(expected, name))
            for name in SharpGaussians._fields]
    print_table("Core ML vs torch, network outputs (normalized space)", rows)
    if reference:
        rows = [differences(name, getattr(raw, name), reference[f"raw_{name}"])
                for name in SharpGaussians._fields]
        print_table("Core ML vs ml-sharp (fixture), network outputs", rows)

    ours, theirs = (unproject(r, f_px, image_size, size) for r in (raw, expected))
    rows = [differences("means (m)", ours.means, theirs.means),
            differences("covariances (m^2)", covariances(ours.quats.double(), ours.scales.double()),
                        covariances(theirs.quats.double(), theirs.scales.double())),
            differences("colors (linear RGB)", ours.colors, theirs.colors),
            differences("opacities", ours.opacities, theirs.opacities)]
    print_table("Core ML vs torch, metric Gaussians after unprojection", rows)
    if args.plan:
        print_compute_plan(mlmodel, units)
    return 0


if __name__ == "__main__":
    sys.exit(main())
