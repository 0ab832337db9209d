"""Export SHARP to ONNX and run it in ONNX Runtime.

Two graphs:

- the network (`full=False`): (image [1, 3, S, S] in [0, 1], disparity_factor [1]) -> the
  network's five outputs in normalized camera space; `predict_image(..., backend="onnx")` resizes
  the photo and unprojects in Python.
- the whole pipeline (`full=True`, see `onnx_gaussians.py`): (image [1, 3, H, W] in [0, 1], any
  size; focal_length_px [1]) -> metric Gaussians (means, scales, quaternions, colors,
  opacities), so an app needs nothing but ONNX Runtime.

Precision: "fp32"; "fp16" stores the weights as float16 (half the file; each weight is cast back
to float32 on load, so computation stays float32 on every CPU); "int8" quantizes the MatMul and
Gemm weights to int8 with activations quantized at run time (ONNX Runtime's dynamic
quantization). Weights go to an external `<name>.data` file when they pass 2 GB (protobuf's limit).
A failed export leaves no file behind.
The ViT attention is ONNX Runtime's MultiHeadAttention unless `ort_attention=False` (see
`export_onnx`); sessions run without ONNX Runtime's memory arena (see `session_options`).
"""

from __future__ import annotations

import os
import tempfile
import types
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from splatforge.errors import SplatforgeError

from .onnx_gaussians import GAUSSIAN_INPUTS, GAUSSIAN_OUTPUTS, GaussiansPipeline
from .sharp import RGBGaussianPredictor, SharpGaussians

if TYPE_CHECKING:
    from .api import Prediction

INPUT_NAMES = ("image", "disparity_factor")
OUTPUT_NAMES = SharpGaussians._fields  # mean_vectors, singular_values, quaternions, colors, opacities
MODEL_TAG = "splatforge.sharp"
PRECISIONS = ("fp32", "fp16", "int8")
Precision = Literal["fp32", "fp16", "int8"]
_PROTOBUF_LIMIT = 2**31 - 1
# Past this many bytes of external weights, `_finish` streams them instead of loading them.
EXTERNAL_DATA_BYTES = _PROTOBUF_LIMIT - 2**26


class TracedNetwork(nn.Module):
    """The SHARP network with its outputs as a plain tuple, the form torch.onnx and torch.jit.trace take
    (ONNX and Core ML exports)."""

    def __init__(self, model: RGBGaussianPredictor) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, disparity_factor: torch.Tensor):
        return tuple(self.model(image, disparity_factor))


class _MultiHeadAttention(torch.autograd.Function):
    """Scaled dot-product attention over q, k, v [B, S, D] that exports as ONNX Runtime's
    com.microsoft MultiHeadAttention, whose CPU kernel is a flash attention: the [B, heads, S, S]
    scores (1.5 GB per ViT block for the full model's 35 patches) are never stored."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int) -> torch.Tensor:
        b, n, c = q.shape

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(b, n, num_heads, c // num_heads).transpose(1, 2)

        return F.scaled_dot_product_attention(heads(q), heads(k), heads(v)).transpose(1, 2).reshape(b, n, c)

    @staticmethod
    def symbolic(g, q, k, v, num_heads: int):
        return g.op("com.microsoft::MultiHeadAttention", q, k, v, num_heads_i=num_heads).setType(q.type())


def _fused_attention_forward(self, x: torch.Tensor) -> torch.Tensor:
    # The qkv projection's features are laid out (3, heads, head_dim): thirds are q, k, v.
    q, k, v = self.qkv(x).chunk(3, dim=-1)
    return self.proj(_MultiHeadAttention.apply(q, k, v, self.num_heads))


@contextmanager
def _ort_attention(model: nn.Module):
    """While exporting, the ViT blocks' attention becomes one MultiHeadAttention node each."""
    from .sharp.vit import Attention

    blocks = [m for m in model.modules() if isinstance(m, Attention)]
    for block in blocks:
        block.forward = types.MethodType(_fused_attention_forward, block)
    try:
        yield
    finally:
        for block in blocks:
            del block.forward


def _writable_target(path: Path) -> None:
    """Fail before minutes of export if `path` cannot be written (or names a folder)."""
    if path.is_dir():
        raise SplatforgeError(f"cannot write {path}: it is a folder; give a file name ending in .onnx")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as err:
        raise SplatforgeError(f"cannot write {path}: {err.strerror or err}; choose a folder you "
                              "can write to") from err


def export_onnx(model: RGBGaussianPredictor, path: str | os.PathLike, *, full: bool = False,
                precision: Precision = "fp32", opset: int = 17, ort_attention: bool = True) -> Path:
    """Write `model` as an ONNX file (plus `<name>.data` when the weights exceed 2 GB).

    Args:
        model: from `build_predictor`.
        path: the .onnx file to write; its folder is created if needed.
        full: the whole pipeline (photo + focal length -> metric Gaussians) instead of the
            network alone (see the module docstring).
        precision: "fp32", "fp16" (float16 weights) or "int8" (dynamic int8 quantization).
        opset: the ONNX opset.
        ort_attention: each ViT attention as ONNX Runtime's MultiHeadAttention (com.microsoft
            domain; a flash attention on the CPU that never stores the scores: one full-size
            ViT-L block took 7.8 CPU-s against 9.4 with standard ops, torch 7.6); False keeps
            standard ONNX ops only (MatMul, Softmax), for runtimes without ONNX Runtime's
            contrib ops.
    """
    if precision not in PRECISIONS:
        raise SplatforgeError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    path = Path(path)
    _writable_target(path)
    model = model.eval().cpu()
    size = model.internal_resolution()
    if full:
        module: nn.Module = GaussiansPipeline(model)
        # A non-square example, so the tracer cannot mistake width for height.
        example = (torch.rand(1, 3, size, size + 8), torch.tensor([0.9 * size]))
        names, outputs = GAUSSIAN_INPUTS, GAUSSIAN_OUTPUTS
        dynamic = {"image": {2: "height", 3: "width"}}
    else:
        module = TracedNetwork(model)
        example = (torch.rand(1, 3, size, size), torch.tensor([1.0]))
        names, outputs, dynamic = INPUT_NAMES, OUTPUT_NAMES, None
    # torch writes a model over 2 GB as one file per tensor: export into a scratch folder, then
    # save in the layout we want and move it into place.
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as scratch:
        tmp = Path(scratch) / "model.onnx"
        fused = _ort_attention(model) if ort_attention else nullcontext()
        with torch.no_grad(), warnings.catch_warnings(), fused:
            # Python-side shape arithmetic is constant for a fixed input size, as the tracer
            # warns; the legacy exporter is chosen on purpose (2x faster graphs in ORT here).
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            torch.onnx.export(module, example, str(tmp), input_names=list(names),
                              output_names=list(outputs), opset_version=opset, dynamo=False,
                              do_constant_folding=True, dynamic_axes=dynamic,
                              custom_opsets={"com.microsoft": 1} if ort_attention else None)
        tag = (f"internal_resolution={size};color_space={model.params.color_space};"
               f"graph={'gaussians' if full else 'network'}")
        _finish(tmp, path, precision, tag)
    return path


def convert_onnx(source: str | os.PathLike, path: str | os.PathLike, precision: Precision) -> Path:
    """Write a float32 export of splatforge (`export_onnx`) at another precision, without the
    torch model (for the full-size network, tracing again costs minutes and gigabytes)."""
    import onnx

    source, path = Path(source), Path(path)
    if precision not in PRECISIONS:
        raise SplatforgeError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    try:
        fields = _tag_fields(onnx.load(str(source), load_external_data=False))
    except Exception as err:  # noqa: BLE001 - protobuf's decode errors, missing file
        raise SplatforgeError(f"{source} is not a readable ONNX file: {err}") from err
    if fields is None or fields.get("precision", "fp32") != "fp32":
        raise SplatforgeError(f"{source} is not a float32 SHARP export of splatforge; export one "
                              "with `splatforge export-onnx`")
    _writable_target(path)
    tag = ";".join(f"{k}={v}" for k, v in fields.items() if k != "precision")
    _finish(source, path, precision, tag)
    return path


def _tag_fields(proto) -> dict[str, str] | None:
    for prop in proto.metadata_props:
        if prop.key == MODEL_TAG:
            return dict(item.split("=", 1) for item in prop.value.split(";") if "=" in item)
    return None


def _finish(source: Path, path: Path, precision: str, tag: str) -> None:
    """Convert the float32 model at `source` to `precision`, tag it, and move it into place at
    `path` (weights first, so a reader never sees a model without its weights file)."""
    import onnx

    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as scratch:
        if precision == "int8":
            source = _quantize_int8(source, Path(scratch) / "int8.onnx")
        staged = Path(scratch) / "final" / path.name
        staged.parent.mkdir()
        proto = onnx.load(str(source), load_external_data=False)
        stream = precision != "fp16" and _external_bytes(proto) > EXTERNAL_DATA_BYTES
        if not stream:
            onnx.load_external_data_for_model(proto, str(source.parent))
        if precision == "fp16":
            _weights_to_fp16(proto)
        del proto.metadata_props[:]
        meta = proto.metadata_props.add()
        meta.key, meta.value = MODEL_TAG, f"{tag};precision={precision}"
        if stream:  # copy the weights file by file: the full model's 2.8 GB never sit in memory
            _stream_external_data(proto, source.parent, staged)
            onnx.save_model(proto, str(staged))
        else:
            _save(proto, staged)
        del proto
        data = path.with_name(path.name + ".data")
        staged_data = staged.with_name(data.name)
        if staged_data.exists():
            os.replace(staged_data, data)
        else:
            data.unlink(missing_ok=True)  # a stale weights file from an earlier, larger export
        os.replace(staged, path)


def _external_bytes(proto) -> int:
    from onnx import TensorProto

    return sum(int({e.key: e.value for e in t.external_data}.get("length", 0))
               for t in proto.graph.initializer if t.data_location == TensorProto.EXTERNAL)


def _stream_external_data(proto, source_dir: Path, path: Path) -> None:
    """Gather the external tensors of `proto` (stored under `source_dir`, one file or many)
    into `<path>.data`, rewriting their locations, one tensor in memory at a time."""
    from onnx import TensorProto

    data_name = path.name + ".data"
    with open(path.with_name(data_name), "wb") as out:
        for tensor in proto.graph.initializer:
            if tensor.data_location != TensorProto.EXTERNAL:
                continue
            info = {e.key: e.value for e in tensor.external_data}
            with open(source_dir / info["location"], "rb") as src:
                src.seek(int(info.get("offset", 0)))
                blob = src.read(int(info["length"])) if "length" in info else src.read()
            out.seek(-out.tell() % 4096, os.SEEK_CUR)  # page-aligned, as onnx writes it (mmap)
            offset = out.tell()
            out.write(blob)
            del tensor.external_data[:]
            for key, value in (("location", data_name), ("offset", str(offset)),
                               ("length", str(len(blob)))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value


def _save(proto, path: Path) -> None:
    import onnx

    # ByteSize() itself fails past protobuf's 2 GB limit, so count the weights' bytes.
    weight_bytes = sum(len(t.raw_data) or t.ByteSize() for t in proto.graph.initializer)
    if weight_bytes > _PROTOBUF_LIMIT - 2**26:
        onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=1024)
    else:
        onnx.save_model(proto, str(path))


def _quantize_int8(path: Path, out: Path) -> Path:
    """Dynamic int8 quantization of MatMul/Gemm weights (the ViT encoders' and heads' linear
    layers, most of the compute); convolutions stay float32 (ConvInteger is slower than float
    convolution in ONNX Runtime's CPU provider)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # External data always: the quantizer would otherwise fail past 2 GB; `_finish` re-saves.
    quantize_dynamic(path, out, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"],
                     use_external_data_format=True)
    return out


def _weights_to_fp16(proto) -> None:
    """Store float32 initializers as float16, each followed by a Cast back to float32."""
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    casts = []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or np.prod(init.dims, dtype=np.int64) < 16:
            continue
        array = numpy_helper.to_array(init)
        name = init.name
        half_name = name + "__fp16"
        init.CopyFrom(numpy_helper.from_array(array.astype(np.float16), half_name))
        casts.append(helper.make_node("Cast", [half_name], [name], to=TensorProto.FLOAT,
                                      name=f"cast_{half_name}"))
    # The casts must come before their consumers in the node list (topological order).
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)


def session_options(threads: int | None = None, *, memory_arena: bool = False,
                    spinning: bool = False):
    """ONNX Runtime options used for SHARP: all graph optimizations (NCHWc convolutions);
    `threads` intra-op threads (default: ONNX Runtime's, one per physical core).

    Args:
        memory_arena: ONNX Runtime's CPU arena. It grows by doubling and never shrinks: for the
            full-size model it held 11.25 GiB (weights included) when at most 5.69 GiB were in
            use, because the last step of 4 GiB was taken for one 1.1 GiB tensor of the depth head
            (peak resident 9.4 GiB; an arena growing only by what is asked still held 9.0).
            Off (the default), each tensor is allocated and freed on its own and memory follows
            use (peak 7.1 GiB), at the price of fresh pages for every large tensor: about 1.25x
            the CPU time of a run with the arena (331 against 261 CPU-s, 2 threads). Turn it on
            when speed matters more than memory.
        spinning: idle pool threads spin waiting for work (ONNX Runtime's default). Off, they
            sleep: a little more latency per node, but no CPU burnt while waiting, which on a
            shared or small machine slows the other work and inflates ONNX Runtime's CPU time.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    # The memory pattern (one block for a run's tensors, planned from the first run) follows the
    # arena: with both off, memory is what the tensors in use need (measured that way).
    options.enable_cpu_mem_arena = options.enable_mem_pattern = memory_arena
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return options


class OnnxPredictor:
    """An exported SHARP graph in an ONNX Runtime session.

    A network graph is callable like the torch model; a whole-pipeline graph
    (`outputs_gaussians`) gives a `Prediction` from `predict`.
    """

    def __init__(self, path: str | os.PathLike, providers: list[str] | None = None,
                 options=None) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise SplatforgeError(f"ONNX model not found: {path}")
        try:
            self.session = ort.InferenceSession(str(path), options or session_options(),
                                                providers=providers or ["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise SplatforgeError(f"{path} is not a loadable ONNX model: "
                                  f"{str(err).splitlines()[0]}") from err
        inputs = tuple(i.name for i in self.session.get_inputs())
        outputs = tuple(o.name for o in self.session.get_outputs())
        tag = self.session.get_modelmeta().custom_metadata_map.get(MODEL_TAG)
        fields = dict(item.split("=", 1) for item in (tag or "").split(";") if "=" in item)
        self.outputs_gaussians = fields.get("graph") == "gaussians"
        expected = ((GAUSSIAN_INPUTS, GAUSSIAN_OUTPUTS) if self.outputs_gaussians
                    else (INPUT_NAMES, OUTPUT_NAMES))
        if tag is None or (inputs, outputs) != expected:
            raise SplatforgeError(
                f"{path} is not a SHARP model exported by splatforge (inputs {list(inputs)}, "
                f"outputs {list(outputs)}); export one with `splatforge export-onnx --full`")
        self._size = int(fields["internal_resolution"])
        self.color_space = fields.get("color_space", "linearRGB")
        self.precision = fields.get("precision", "fp32")
        self.path = path

    def internal_resolution(self) -> int:
        return self._size

    def __call__(self, image: torch.Tensor, disparity_factor: torch.Tensor) -> SharpGaussians:
        """The network graph: normalized-space Gaussians, as the torch model returns them."""
        if self.outputs_gaussians:
            raise SplatforgeError(f"{self.path} is a whole-pipeline graph: call predict(rgb, "
                                  "focal_length_px) or predict_image(..., backend='onnx')")
        expected = (1, 3, self._size, self._size)
        if tuple(image.shape) != expected:
            raise SplatforgeError(f"the ONNX model takes images {expected}, got {tuple(image.shape)}")
        outputs = self.session.run(None, {
            "image": image.detach().cpu().numpy().astype(np.float32),
            "disparity_factor": disparity_factor.detach().cpu().numpy().astype(np.float32),
        })
        return SharpGaussians(*(torch.from_numpy(o) for o in outputs))

    def predict(self, rgb: np.ndarray, focal_length_px: float) -> Prediction:
        """A photo [H, W, 3] in [0, 1] and its focal length in pixels -> metric `Prediction`."""
        from .api import Prediction, network_input, unproject

        height, width = rgb.shape[:2]
        if not self.outputs_gaussians:  # an older network-only export: unproject in Python
            raw = self(network_input(rgb, self._size),
                       torch.tensor([focal_length_px / width], dtype=torch.float32))
            return unproject(raw, focal_length_px, (width, height), self._size, self.color_space)
        image = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32)
        outputs = self.session.run(None, {
            "image": image, "focal_length_px": np.array([focal_length_px], np.float32)})
        means, scales, quats, colors, opacities = (torch.from_numpy(o) for o in outputs)
        return Prediction(means, scales, quats, colors, opacities, float(focal_length_px),
                          (width, height), self.color_space)


def load_onnx_predictor(path: str | os.PathLike, threads: int | None = None) -> OnnxPredictor:
    return OnnxPredictor(path, options=session_options(threads))
