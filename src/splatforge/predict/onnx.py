"""Export the SHARP network to ONNX and run it in ONNX Runtime with the same pre/post-processing.

The exported graph maps (image [1, 3, S, S] in [0, 1], disparity_factor [1]) to the network's five
outputs in normalized camera space; `predict_image(..., backend="onnx")` does the rest. Weights
go to an external data file when the model is over 2 GB (protobuf's limit), and can be stored as
float16 (computation stays float32: each weight is cast back on load by the graph).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from splatforge.errors import SplatforgeError

from .sharp import RGBGaussianPredictor, SharpGaussians

INPUT_NAMES = ("image", "disparity_factor")
OUTPUT_NAMES = SharpGaussians._fields  # mean_vectors, singular_values, quaternions, colors, opacities
MODEL_TAG = "splatforge.sharp"
_PROTOBUF_LIMIT = 2**31 - 1


class _Exportable(nn.Module):
    def __init__(self, model: RGBGaussianPredictor) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, disparity_factor: torch.Tensor):
        return tuple(self.model(image, disparity_factor))


def export_onnx(model: RGBGaussianPredictor, path: str | os.PathLike, *, fp16: bool = False,
                opset: int = 17) -> Path:
    """Write `model` as an ONNX file (plus `<name>.data` when the weights exceed 2 GB)."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    size = model.internal_resolution()
    image = torch.rand(1, 3, size, size)
    factor = torch.tensor([1.0])
    # torch writes a model over 2 GB as one file per tensor; export into a scratch directory
    # and re-save below in the layout we want.
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as scratch:
        tmp = Path(scratch) / "model.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            # Python-side shape arithmetic is constant for a fixed input size, as the tracer
            # warns; the legacy exporter is chosen on purpose (2x faster graphs in ORT here).
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(_Exportable(model), (image, factor), str(tmp),
                              input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                              opset_version=opset, dynamo=False, do_constant_folding=True)
        proto = onnx.load(str(tmp), load_external_data=True)
    if fp16:
        _weights_to_fp16(proto)
    meta = proto.metadata_props.add()
    meta.key, meta.value = MODEL_TAG, f"internal_resolution={size};color_space={model.params.color_space}"
    data_name = path.name + ".data"
    (path.parent / data_name).unlink(missing_ok=True)
    # ByteSize() itself fails past protobuf's 2 GB limit, so count the weights' bytes.
    weight_bytes = sum(len(t.raw_data) or t.ByteSize() for t in proto.graph.initializer)
    if weight_bytes > _PROTOBUF_LIMIT - 2**26:
        onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=1024)
    else:
        onnx.save_model(proto, str(path))
    return path


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


class OnnxPredictor:
    """An exported SHARP network in an ONNX Runtime session; callable like the torch model."""

    def __init__(self, path: str | os.PathLike, providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise SplatforgeError(f"ONNX model not found: {path}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=providers or ["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise SplatforgeError(f"{path} is not a loadable ONNX model: "
                                  f"{str(err).splitlines()[0]}") from err
        inputs = self.session.get_inputs()
        outputs = [o.name for o in self.session.get_outputs()]
        tag = self.session.get_modelmeta().custom_metadata_map.get(MODEL_TAG)
        if (tuple(i.name for i in inputs) != INPUT_NAMES or tuple(outputs) != OUTPUT_NAMES
                or tag is None):
            raise SplatforgeError(
                f"{path} is not a SHARP network exported by splatforge (inputs "
                f"{[i.name for i in inputs]}, outputs {outputs}); export one with "
                "`splatforge export-onnx`")
        fields = dict(item.split("=", 1) for item in tag.split(";") if "=" in item)
        self._size = int(fields.get("internal_resolution", inputs[0].shape[-1]))
        self.color_space = fields.get("color_space", "linearRGB")
        self.path = path

    def internal_resolution(self) -> int:
        return self._size

    def __call__(self, image: torch.Tensor, disparity_factor: torch.Tensor) -> SharpGaussians:
        expected = (1, 3, self._size, self._size)
        if tuple(image.shape) != expected:
            raise SplatforgeError(f"the ONNX model takes images {expected}, got {tuple(image.shape)}")
        outputs = self.session.run(None, {
            "image": image.detach().cpu().numpy().astype(np.float32),
            "disparity_factor": disparity_factor.detach().cpu().numpy().astype(np.float32),
        })
        return SharpGaussians(*(torch.from_numpy(o) for o in outputs))


def load_onnx_predictor(path: str | os.PathLike) -> OnnxPredictor:
    return OnnxPredictor(path)
