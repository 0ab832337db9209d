"""The whole-pipeline ONNX graph (photo + focal length -> metric Gaussians): its eigen-solver,
parity with the torch pipeline, the fp16/int8 variants, and bad input."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from splatforge.cli import main as run
from splatforge.errors import SplatforgeError
from splatforge.predict import predict_image
from splatforge.predict.onnx import convert_onnx, export_onnx, load_onnx_predictor
from splatforge.predict.onnx_gaussians import symmetric_eigen_jacobi
from splatforge.predict.unproject import covariances

from .conftest import DATA


def _matrices(n: int = 4000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    rot = np.linalg.qr(rng.normal(size=(n, 3, 3)))[0]
    values = np.exp(rng.uniform(-14, 2, size=(n, 3)))

    def build(lam):
        return rot @ (lam[..., None] * rot.transpose(0, 2, 1))

    repeated, singular = values.copy(), values.copy()
    repeated[: n // 2, 1] = repeated[: n // 2, 0]  # top pair repeated
    repeated[n // 2:, 2] = repeated[n // 2:, 1]  # bottom pair repeated
    singular[:, 2] = 0.0
    singular[: n // 2, 1] *= 1e-7
    cases = {
        "random": build(values),
        "diagonal": values[:, :, None] * np.eye(3),
        "repeated": build(repeated),
        "isotropic": values[:, :1, None] * np.eye(3),
        "near_singular": build(singular),
        "zero": np.zeros((4, 3, 3)),
    }
    return {k: ((m + m.transpose(0, 2, 1)) / 2).astype(np.float32) for k, m in cases.items()}


class _Eigen(torch.nn.Module):
    def forward(self, c):
        values, vectors = symmetric_eigen_jacobi(c[:, 0, 0], c[:, 0, 1], c[:, 0, 2], c[:, 1, 1],
                                                 c[:, 1, 2], c[:, 2, 2])
        return torch.stack(values, -1), torch.stack([torch.stack(r, -1) for r in vectors], -2)


@pytest.fixture(scope="module")
def eigen_session(tmp_path_factory):
    import onnxruntime as ort

    path = tmp_path_factory.mktemp("eigen") / "eigen.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(_Eigen(), (torch.eye(3)[None].repeat(2, 1, 1),), str(path), dynamo=False,
                          input_names=["c"], dynamic_axes={"c": {0: "n"}}, opset_version=17)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("case", list(_matrices()))
@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_jacobi_eigen_matches_numpy(case, runtime, eigen_session):
    c = _matrices()[case]
    if runtime == "torch":
        values, vectors = (t.numpy() for t in _Eigen()(torch.from_numpy(c)))
    else:
        values, vectors = eigen_session.run(None, {"c": c})
    c64, values, vectors = c.astype(np.float64), values.astype(np.float64), vectors.astype(np.float64)
    scale = np.abs(c64).max(axis=(1, 2), keepdims=True) + 1e-30
    expected = np.linalg.eigvalsh(c64)[:, ::-1]
    assert np.all(np.abs(values - expected) <= 2e-6 * scale[:, 0])
    assert np.all(np.diff(values, axis=1) <= 0), "eigenvalues must come out descending"
    rebuilt = vectors @ (values[..., None] * vectors.transpose(0, 2, 1))
    assert np.all(np.abs(rebuilt - c64) <= 4e-6 * scale)
    np.testing.assert_allclose(vectors.transpose(0, 2, 1) @ vectors, np.broadcast_to(np.eye(3), c.shape),
                               atol=4e-6)
    np.testing.assert_allclose(np.linalg.det(vectors), 1.0, atol=1e-5)  # proper rotations


@pytest.fixture(scope="module")
def full_onnx(small_predictor, tmp_path_factory):
    return export_onnx(small_predictor, tmp_path_factory.mktemp("full") / "full.onnx", full=True)


def _gaussian_errors(a, b) -> dict[str, float]:
    cov_a = covariances(a.quats.double(), a.scales.double())
    cov_b = covariances(b.quats.double(), b.scales.double())
    errors = {k: float((getattr(a, k) - getattr(b, k)).abs().max())
              for k in ("means", "colors", "opacities")}
    errors["covariances"] = float((cov_a - cov_b).abs().max())
    return errors


def test_full_graph_matches_the_torch_pipeline(small_predictor, full_onnx, reference):
    session = load_onnx_predictor(full_onnx)
    assert session.outputs_gaussians
    f = float(reference["f_px"])
    expected = predict_image(reference["image"], small_predictor, focal_length_px=f)
    got = predict_image(reference["image"], session, backend="onnx", focal_length_px=f)
    assert got.num_gaussians == expected.num_gaussians == 8192
    assert got.image_size == expected.image_size and got.color_space == expected.color_space
    for field, error in _gaussian_errors(expected, got).items():
        assert error <= 1e-4, field
    # Against ml-sharp's own final Gaussians (float64 SVD), too.
    cov = covariances(got.quats.double(), got.scales.double()).numpy()
    assert np.abs(cov - reference["final_covariances"][0]).max() <= 1e-4
    assert np.abs(got.means.numpy() - reference["final_mean_vectors"][0]).max() <= 1e-4
    # Outputs as documented: unit quaternions with w >= 0, scales largest first.
    assert torch.allclose(got.quats.norm(dim=-1), torch.ones(8192), atol=1e-5)
    assert (got.quats[:, 0] >= 0).all() and (got.scales.diff(dim=-1) <= 0).all()


def test_attention_is_one_node_or_standard_ops(small_predictor, full_onnx, tmp_path, reference):
    """By default each ViT block's attention is ONNX Runtime's MultiHeadAttention (flash attention
    on the CPU); `ort_attention=False` writes standard ops only, with the same Gaussians."""
    import onnx

    from splatforge.predict.sharp.vit import Attention

    blocks = sum(isinstance(m, Attention) for m in small_predictor.modules())
    assert blocks > 0
    fused = onnx.load(str(full_onnx)).graph.node
    assert sum(n.op_type == "MultiHeadAttention" and n.domain == "com.microsoft" for n in fused) == blocks
    assert not any(n.op_type == "Softmax" for n in fused)
    plain = export_onnx(small_predictor, tmp_path / "plain.onnx", full=True, ort_attention=False)
    nodes = onnx.load(str(plain)).graph.node
    assert {n.domain for n in nodes} <= {""} and sum(n.op_type == "Softmax" for n in nodes) == blocks
    f = float(reference["f_px"])
    expected = predict_image(reference["image"], str(full_onnx), backend="onnx", focal_length_px=f)
    got = predict_image(reference["image"], str(plain), backend="onnx", focal_length_px=f)
    for field, error in _gaussian_errors(expected, got).items():
        assert error <= 1e-5, field


def test_sessions_free_memory_and_do_not_spin(full_onnx):
    """The predictor's session runs without the growing CPU arena and without spinning threads
    (see `session_options`); both can be asked for."""
    from splatforge.predict.onnx import session_options

    options = load_onnx_predictor(full_onnx, threads=1).session.get_session_options()
    assert not options.enable_cpu_mem_arena and not options.enable_mem_pattern
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    options = session_options(memory_arena=True, spinning=True)
    assert options.enable_cpu_mem_arena
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"


@pytest.mark.parametrize("shape", [(40, 24), (24, 40)])  # portrait and landscape, not the traced size
def test_full_graph_takes_any_image_size(small_predictor, full_onnx, shape):
    rgb = (np.random.default_rng(1).random((*shape, 3)) * 255).astype(np.uint8)
    expected = predict_image(rgb, small_predictor, focal_length_px=33.0)
    got = predict_image(rgb, str(full_onnx), backend="onnx", focal_length_px=33.0)
    assert got.image_size == (shape[1], shape[0])
    for field, error in _gaussian_errors(expected, got).items():
        assert error <= 1e-4, field


def _weights_by_op(path) -> dict[str, set[int]]:
    """For each op type, the data types of the weights (initializers) it reads."""
    import onnx

    graph = onnx.load(str(path)).graph
    types = {i.name: i.data_type for i in graph.initializer}
    # fp16 weights reach their consumers through a Cast: follow it back.
    casts = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Cast"}
    found: dict[str, set[int]] = {}
    for node in graph.node:
        for name in node.input:
            name = casts.get(name, name)
            if name in types and node.op_type != "Cast":
                found.setdefault(node.op_type, set()).add(types[name])
    return found


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_smaller_precisions(full_onnx, tmp_path, reference, precision):
    from onnx import TensorProto

    path = convert_onnx(full_onnx, tmp_path / f"{precision}.onnx", precision)
    weights = _weights_by_op(path)
    if precision == "fp16":
        assert TensorProto.FLOAT16 in weights["Conv"] and weights["MatMul"] == {TensorProto.FLOAT16}
        assert path.stat().st_size < 0.8 * full_onnx.stat().st_size
    else:  # the small preset is mostly convolutions, which stay float: no size test here
        assert "MatMul" not in weights and TensorProto.INT8 in weights["MatMulInteger"]
    session = load_onnx_predictor(path)
    assert session.precision == precision and session.outputs_gaussians
    f = float(reference["f_px"])
    exact = predict_image(reference["image"], str(full_onnx), backend="onnx", focal_length_px=f)
    approx = predict_image(reference["image"], session, backend="onnx", focal_length_px=f)
    errors = _gaussian_errors(exact, approx)
    assert 0 < errors["means"] < 0.05 and errors["colors"] < 0.05
    with pytest.raises(SplatforgeError, match="not a float32 SHARP export"):
        convert_onnx(path, tmp_path / "again.onnx", "int8")


def test_export_refuses_an_unwritable_path(small_predictor, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    with pytest.raises(SplatforgeError, match="cannot write"):
        export_onnx(small_predictor, blocker / "model.onnx", full=True)
    with pytest.raises(SplatforgeError, match="it is a folder"):
        export_onnx(small_predictor, tmp_path, full=True)
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]
    if os.geteuid() != 0:  # root writes anywhere
        readonly = tmp_path / "readonly"
        readonly.mkdir(mode=0o500)
        with pytest.raises(SplatforgeError, match="cannot write"):
            export_onnx(small_predictor, readonly / "model.onnx")
        assert list(readonly.iterdir()) == []


def test_export_command_full_int8_and_predict(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    assert run(["export-onnx", "--full", "--precision", "int8", "--preset", "small", "--seed", "1",
                "-o", str(model)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no scratch files left
    Image.fromarray(np.full((24, 32, 3), 128, np.uint8)).save(tmp_path / "g.png")
    # No model options: the ONNX file is the whole model.
    assert run(["predict", str(tmp_path / "g.png"), "-o", str(tmp_path / "out"), "--backend", "onnx",
                "--onnx-model", str(model)]) == 0
    assert "8,192 Gaussians" in capsys.readouterr().out
    assert (tmp_path / "out" / "g.ply").is_file()


def test_export_command_with_a_checkpoint_of_another_preset(tmp_path, capsys):
    out = tmp_path / "out" / "m.onnx"
    assert run(["export-onnx", "--full", "--preset", "default", "--checkpoint",
                str(DATA / "sharp_small_state_dict.pt"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "does not match this SHARP network" in err and "sharp_small_state_dict.pt" in err
    assert not out.exists() and not out.parent.exists()


def test_predict_refuses_an_onnx_file_of_another_model(tmp_path, capsys):
    other = tmp_path / "other.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(torch.nn.Linear(3, 2), (torch.zeros(1, 3),), str(other), dynamo=False)
    Image.fromarray(np.full((24, 32, 3), 128, np.uint8)).save(tmp_path / "g.png")
    assert run(["predict", str(tmp_path / "g.png"), "-o", str(tmp_path / "out"), "--backend", "onnx",
                "--onnx-model", str(other)]) == 2
    err = capsys.readouterr().err
    assert "other.onnx is not a SHARP model exported by splatforge" in err
    assert not (tmp_path / "out" / "g.ply").exists()


def test_network_only_export_still_predicts(small_predictor, tmp_path, reference):
    """Files from earlier versions (the network alone) keep working: unprojection in Python."""
    path = export_onnx(small_predictor, tmp_path / "net.onnx")
    session = load_onnx_predictor(path)
    assert not session.outputs_gaussians
    f = float(reference["f_px"])
    got = predict_image(reference["image"], session, backend="onnx", focal_length_px=f)
    expected = predict_image(reference["image"], small_predictor, focal_length_px=f)
    for field, error in _gaussian_errors(expected, got).items():
        assert error <= 1e-4, field
    with pytest.raises(SplatforgeError, match="whole-pipeline graph"):
        load_onnx_predictor(export_onnx(small_predictor, tmp_path / "full.onnx", full=True))(
            torch.zeros(1, 3, 128, 128), torch.ones(1))


def test_predict_command_exports_the_pipeline_on_the_fly(tmp_path, capsys):
    Image.fromarray(np.full((24, 32, 3), 90, np.uint8)).save(tmp_path / "g.png")
    assert run(["predict", str(tmp_path / "g.png"), "-o", str(tmp_path / "out"), "--preset", "small",
                "--seed", "3", "--backend", "onnx", "--precision", "fp16"]) == 0
    assert "exported the pipeline to" in capsys.readouterr().out
    session = load_onnx_predictor(tmp_path / "out" / "model.onnx")
    assert session.outputs_gaussians and session.precision == "fp16"
    assert (tmp_path / "out" / "g.ply").is_file()


def test_external_weights_are_gathered_into_one_file(full_onnx, tmp_path, reference, monkeypatch):
    """A model whose weights lie outside the .onnx file (as torch writes one over 2 GB, one file
    per tensor) comes out as <name>.onnx + <name>.onnx.data, weights streamed, not loaded."""
    import onnx

    import splatforge.predict.onnx as onnx_module

    source = tmp_path / "src" / "model.onnx"
    source.parent.mkdir()
    onnx.save_model(onnx.load(str(full_onnx)), str(source), save_as_external_data=True,
                    all_tensors_to_one_file=False, size_threshold=1024)
    assert len(list(source.parent.iterdir())) > 10
    monkeypatch.setattr(onnx_module, "EXTERNAL_DATA_BYTES", 0)
    out = convert_onnx(source, tmp_path / "out" / "gathered.onnx", "fp32")
    assert sorted(p.name for p in out.parent.iterdir()) == ["gathered.onnx", "gathered.onnx.data"]
    f = float(reference["f_px"])
    expected = predict_image(reference["image"], str(full_onnx), backend="onnx", focal_length_px=f)
    got = predict_image(reference["image"], str(out), backend="onnx", focal_length_px=f)
    for field in ("means", "scales", "quats", "colors", "opacities"):
        assert torch.equal(getattr(expected, field), getattr(got, field)), field


def test_cli_precision_choices_are_the_library_ones():
    import typing

    from splatforge import predict_cli
    from splatforge.predict.onnx import PRECISIONS

    assert typing.get_args(predict_cli.Precision) == PRECISIONS
