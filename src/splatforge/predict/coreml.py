"""Export the SHARP network to Core ML: an ML Program (`.mlpackage`) built with coremltools.

    from splatforge.predict import build_predictor
    from splatforge.predict.coreml import export_coreml
    export_coreml(build_predictor(), "sharp.mlpackage", precision="fp16")

Converted on any OS (coremltools 9.0, `pip install 'splatforge[coreml]'`); running the package needs
macOS 13 / iOS 16 or newer. The conversion traces the torch network (`torch.jit.trace`; coremltools'
`torch.export` front end rejects torch 2.13's `where.ScalarOther`) at its fixed input size.

What the package computes, for an iOS or macOS developer
--------------------------------------------------------
Inputs (MLMultiArray, float32):

- ``image`` [1, 3, S, S]: the photo in RGB channel order (planar: all R, then G, then B), sRGB
  values in [0, 1] (pixel / 255), resized to S x S (S = 1536 for the official network, 128 for
  the `small` preset; stored in the metadata as ``internal_resolution``). splatforge resizes
  bilinearly with aligned corners, stretching, not cropping, the photo to a square.
- ``disparity_factor`` [1]: the photo's focal length in pixels divided by its width in pixels,
  both of the original photo (e.g. f_35mm / 36 for a 35 mm-equivalent focal length f_35mm).

Outputs (MLMultiArray, float32), N = 2 * (S/2)^2 Gaussians (1,179,648 for S = 1536), one row each,
in the network's normalized camera space, not yet metric:

- ``mean_vectors`` [1, N, 3]: (x_ndc * z, y_ndc * z, z); z is depth in metres along the optical
  axis, x_ndc, y_ndc in [-1, 1] across the square input (x right, y down: OpenCV axes).
- ``singular_values`` [1, N, 3]: standard deviations along the Gaussian's own axes, in the
  same normalized space (not log).
- ``quaternions`` [1, N, 4]: the axes' rotation as (w, x, y, z), not normalized.
- ``colors`` [1, N, 3]: linear RGB in [0, 1] (not sRGB; metadata ``color_space``).
- ``opacities`` [1, N]: in [0, 1] (not logit).

Unprojection runs in the caller, not in the package: it needs the original photo's width W and
height H, and splitting the metric covariance back into a rotation and scales is an eigen
problem whose small eigenvalues (scales down to ~1e-4 of the depth) do not survive the float16
arithmetic of the Neural Engine. The caller's maths, with f the focal length in pixels and
L = diag(W / (2 f), H / (2 f), 1):

- metric mean (metres, OpenCV camera frame, the camera at the origin) = L * mean_vector;
- metric covariance = L R diag(s^2) R^T L, R the normalized quaternion's rotation, s the
  singular values. A renderer that takes covariances needs nothing more; for scales and a
  rotation (a PLY file), take the covariance's eigen-decomposition in float32 or float64
  (`splatforge.predict.unproject` does it in closed form: scales = sqrt(eigenvalues)).
- colours for a viewer that blends sRGB values: the sRGB transfer function of ``colors``.

Where it runs (not verifiable on Linux): `cpu_fallback_ops` lists the ops that would take the
CPU whatever the compute units; for SHARP only the composer's sRGB -> linear comparison
(`less_equal`, `logical_not`: boolean tensors). The composer's last reshapes and products work
on the 1.18M-long Gaussian axis, past the 16,384 per dimension the Neural Engine is reported to
take, so expect those few ops on the GPU. `tools/coreml_compare.py` (run on a Mac) checks a
package's outputs against torch's and prints Core ML's own compute plan.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from splatforge.errors import SplatforgeError

from .onnx import TracedNetwork
from .sharp import RGBGaussianPredictor, SharpGaussians

COREMLTOOLS_VERSION = "9.0"
INSTALL_HINT = (f"pip install 'splatforge[coreml]' (or pip install coremltools=={COREMLTOOLS_VERSION})")
INPUT_NAMES = ("image", "disparity_factor")
OUTPUT_NAMES = SharpGaussians._fields
MODEL_TAG = "splatforge.sharp"
Precision = Literal["fp16", "fp32"]  # as `export-onnx --precision` spells them

_DESCRIPTIONS = {
    "image": "RGB photo resized to the square input, planar [1, 3, S, S], sRGB values in [0, 1]",
    "disparity_factor": "focal length in pixels / width in pixels, of the original photo",
    "mean_vectors": "Gaussian centres in normalized camera space: (x_ndc*z, y_ndc*z, z), z in metres",
    "singular_values": "standard deviations along each Gaussian's axes (normalized space)",
    "quaternions": "rotation of each Gaussian's axes, (w, x, y, z), not normalized",
    "colors": "linear RGB in [0, 1]",
    "opacities": "opacity in [0, 1]",
}

# MIL ops that Core ML runs on the CPU whatever the compute units allow, as far as is publicly known:
# the Neural Engine and the GPU compute in floating point only, and have no gather/scatter, control
# flow, recurrent or random-number units (hollance/neural-engine "unsupported layers"; Apple's
# "Deploying Transformers on the Apple Neural Engine"). Apple does not publish the list, so on a Mac
# tools/coreml_compare.py asks Core ML's own compute plan.
CPU_ONLY_OPS = frozenset({
    "gather", "gather_nd", "gather_along_axis", "scatter", "scatter_nd", "scatter_along_axis",
    "non_zero", "non_maximum_suppression", "topk", "argsort", "while_loop", "cond", "lstm", "gru",
    "rnn", "random_bernoulli", "random_categorical", "random_normal", "random_uniform",
})
_FLOAT_TYPES = ("FLOAT16", "FLOAT32")


def require_coremltools():
    """The coremltools module, or a SplatforgeError that says how to install it."""
    # Importing it off macOS logs one warning per missing Core ML runtime class, and one that
    # torch 2.13 is newer than the tested 2.7 (the conversion here is verified with 2.13).
    log = logging.getLogger("coremltools")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        import coremltools
    except ImportError as err:
        raise SplatforgeError(f"Core ML export needs coremltools, which is not installed: "
                              f"{INSTALL_HINT}") from err
    finally:
        log.setLevel(level)
    return coremltools


_fixes_registered = False


def _register_conversion_fixes(ct) -> None:
    """coremltools 9.0 folds a traced `int(...)`/`bool(...)` of a one-element constant with
    `int(array)`, which NumPy >= 2.4 refuses ("only 0-dimensional arrays can be converted");
    the network's patch arithmetic (`int(math.sqrt(patches.shape[0]))`) hits it. Fold such
    constants through `.item()` and leave every other case to coremltools' own converter."""
    global _fixes_registered
    if _fixes_registered:
        return
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch import register_torch_op
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs
    from coremltools.converters.mil.frontend.torch.torch_op_registry import (
        _TORCH_OPS_REGISTRY,
    )

    def fixed(kind: str, cast):
        original = _TORCH_OPS_REGISTRY.get_func(kind)

        def convert(context, node):
            x = _get_inputs(context, node, expected=1)[0]
            if x.can_be_folded_to_const() and np.ndim(x.val) > 0 and np.size(x.val) == 1:
                value = cast(np.asarray(x.val).reshape(()).item())
                context.add(mb.const(val=value, name=node.name), node.name)
            else:
                original(context, node)

        convert.__name__ = f"_{kind}"
        register_torch_op(convert, torch_alias=[kind], override=True)

    fixed("int", int)
    fixed("bool", bool)
    _fixes_registered = True


def _checked_output_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.suffix != ".mlpackage":
        raise SplatforgeError(f"a Core ML package's name ends in .mlpackage; got {path}")
    if path.exists() and not path.is_dir():
        raise SplatforgeError(f"{path} exists and is not a directory (an .mlpackage is one); "
                              f"remove it or choose another name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.TemporaryDirectory(dir=path.parent, prefix=".coreml-probe-")
        probe.cleanup()
    except OSError as err:
        raise SplatforgeError(f"cannot write {path}: {err.strerror or err}; choose a writable "
                              f"folder") from err
    return path


def export_coreml(model: RGBGaussianPredictor, path: str | os.PathLike, *,
                  precision: Precision = "fp16") -> Path:
    """Write `model` as a Core ML ML Program (see the module docstring for inputs and outputs).

    Args:
        model: from `build_predictor`.
        path: the .mlpackage to write (a directory); an existing package is replaced only once
            the new one is complete, and nothing is left behind on failure.
        precision: "fp16" (float16 weights and arithmetic; what the Neural Engine runs) or
            "fp32" (float32 throughout: GPU/CPU only, closest to torch).
    Returns the path.
    """
    ct = require_coremltools()
    if precision not in ("fp16", "fp32"):
        raise SplatforgeError(f"precision must be 'fp16' or 'fp32', got {precision!r}")
    path = _checked_output_path(path)
    _register_conversion_fixes(ct)
    model = model.eval().cpu()
    size = model.internal_resolution()
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    factor = torch.tensor([1.0])
    with torch.no_grad(), warnings.catch_warnings():
        # The Python-side shape arithmetic is constant at the fixed input size, as the tracer warns.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # jit.trace: still coremltools' path
        # ONNX's export wrapper: the network with its outputs as a flat tuple in OUTPUT_NAMES order.
        traced = torch.jit.trace(TracedNetwork(model), (image, factor), check_trace=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "torch 2.13 has not been tested with coremltools"
        mlmodel = ct.convert(
            traced, convert_to="mlprogram",
            inputs=[ct.TensorType(name="image", shape=tuple(image.shape), dtype=np.float32),
                    ct.TensorType(name="disparity_factor", shape=(1,), dtype=np.float32)],
            outputs=[ct.TensorType(name=name, dtype=np.float32) for name in OUTPUT_NAMES],
            compute_precision=(ct.precision.FLOAT16 if precision == "fp16"
                               else ct.precision.FLOAT32),
            minimum_deployment_target=ct.target.iOS16)
    del traced
    for name in INPUT_NAMES:
        mlmodel.input_description[name] = _DESCRIPTIONS[name]
    for name in OUTPUT_NAMES:
        mlmodel.output_description[name] = _DESCRIPTIONS[name]
    mlmodel.short_description = ("Apple SHARP: one photo -> 3D Gaussians in normalized camera "
                                 "space (unproject with the photo's focal length; see splatforge)")
    mlmodel.user_defined_metadata[MODEL_TAG] = (
        f"internal_resolution={size};color_space={model.params.color_space};precision={precision}")
    scratch = Path(tempfile.mkdtemp(dir=path.parent, prefix=".coreml-export-"))
    try:
        staged = scratch / path.name
        try:
            mlmodel.save(str(staged))
        except OSError as err:
            raise SplatforgeError(f"cannot write {path}: {err.strerror or err}") from err
        _replace_dir(staged, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return path


def _replace_dir(new: Path, target: Path) -> None:
    """Move the finished `new` to `target`, replacing an existing package only at the end."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        target.rename(old)
        new.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        new.rename(target)


@dataclass
class CoremlSummary:
    """What a saved package declares (read from its spec; no Core ML runtime needed)."""

    inputs: dict[str, tuple[tuple[int, ...], str]]  # name -> (shape, data type)
    outputs: dict[str, tuple[tuple[int, ...], str]]
    metadata: dict[str, str]
    ops: Counter  # MIL op type -> count (all blocks, consts included)
    cpu_only: dict[str, int]  # ops that would fall back to the CPU (see `cpu_fallback_ops`)
    weight_bytes: int
    total_bytes: int


def _array_type(feature) -> tuple[tuple[int, ...], str]:
    array = feature.type.multiArrayType
    ct = require_coremltools()
    dtype = ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(array.dataType)
    return tuple(int(d) for d in array.shape), dtype


def _operations(block):
    for op in block.operations:
        yield op
        for inner in op.blocks:
            yield from _operations(inner)


def load_spec(path: str | os.PathLike):
    """The protobuf spec of a saved .mlpackage, or a SplatforgeError naming the file."""
    ct = require_coremltools()
    path = Path(path)
    if not (path / "Manifest.json").is_file():
        raise SplatforgeError(f"{path} is not a Core ML package (no Manifest.json in it)")
    try:
        return ct.utils.load_spec(str(path))
    except Exception as err:  # coremltools raises many types for a bad package
        raise SplatforgeError(f"{path} is not a readable Core ML package: {err}") from err


def cpu_fallback_ops(spec) -> dict[str, int]:
    """MIL ops of the main program that would run on the CPU even with the Neural Engine/GPU
    allowed, by two rules: the op type is in CPU_ONLY_OPS, or a non-constant op computes integer
    or boolean tensors (both accelerators compute floating point only). Returns type -> count.
    A heuristic from public knowledge: Apple's compute plan on a Mac is the authority."""
    main = spec.mlProgram.functions["main"]
    found: Counter = Counter()
    for op in _operations(main.block_specializations[main.opset]):
        if op.type == "const":
            continue
        dtypes = {_mil_dtype_name(o.type.tensorType.dataType) for o in op.outputs
                  if o.type.HasField("tensorType")}
        if op.type in CPU_ONLY_OPS or (dtypes and not dtypes <= set(_FLOAT_TYPES)):
            found[op.type] += 1
    return dict(found)


def _mil_dtype_name(value: int) -> str:
    from coremltools.proto import MIL_pb2

    return MIL_pb2.DataType.Name(value)


def summarize_coreml(path: str | os.PathLike) -> CoremlSummary:
    """Inputs, outputs, metadata, MIL op counts and sizes of a saved .mlpackage."""
    path = Path(path)
    spec = load_spec(path)
    main = spec.mlProgram.functions["main"]
    ops = Counter(op.type for op in _operations(main.block_specializations[main.opset]))
    weights = sum(f.stat().st_size for f in path.rglob("weight*.bin"))
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return CoremlSummary(
        inputs={f.name: _array_type(f) for f in spec.description.input},
        outputs={f.name: _array_type(f) for f in spec.description.output},
        metadata=dict(spec.description.metadata.userDefined),
        ops=ops, cpu_only=cpu_fallback_ops(spec), weight_bytes=weights, total_bytes=total)


def check_sharp_package(path: str | os.PathLike) -> CoremlSummary:
    """`summarize_coreml`, refusing a package that is not a SHARP network from `export_coreml`."""
    summary = summarize_coreml(path)
    if (tuple(summary.inputs) != INPUT_NAMES or tuple(summary.outputs) != OUTPUT_NAMES
            or MODEL_TAG not in summary.metadata):
        raise SplatforgeError(
            f"{path} is not a SHARP network exported by splatforge (inputs {list(summary.inputs)}, "
            f"outputs {list(summary.outputs)}); export one with `splatforge export-coreml`")
    return summary


def package_fields(summary: CoremlSummary) -> dict[str, str]:
    """The ``key=value`` fields splatforge stores in the package's metadata."""
    tag = summary.metadata.get(MODEL_TAG, "")
    return dict(item.split("=", 1) for item in tag.split(";") if "=" in item)

