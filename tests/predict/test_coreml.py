"""Core ML export: what Linux can check of a package (its spec, op set, sizes), bad input, and a
missing coremltools. Running a package needs macOS: tools/coreml_compare.py does that there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from splatforge.cli import main as run
from splatforge.errors import SplatforgeError
from splatforge.predict import predict_image

from .conftest import DATA

pytest.importorskip("coremltools")

from splatforge.predict.coreml import (
    OUTPUT_NAMES,
    check_sharp_package,
    export_coreml,
    package_fields,
)

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--preset", "small", "--checkpoint", str(DATA / "sharp_small_state_dict.pt")]
N = 2 * 64 * 64  # the small preset's Gaussians: 2 layers of (128 / 2)^2


@pytest.fixture(scope="module")
def fp16_package(tmp_path_factory):
    """The default precision, written through the command as a user would."""
    out = tmp_path_factory.mktemp("coreml") / "small.mlpackage"
    assert run(["export-coreml", "-o", str(out), *SMALL]) == 0
    return out


def test_package_declares_the_documented_inputs_and_outputs(fp16_package):
    summary = check_sharp_package(fp16_package)
    assert summary.inputs == {"image": ((1, 3, 128, 128), "FLOAT32"),
                              "disparity_factor": ((1,), "FLOAT32")}
    assert summary.outputs == {"mean_vectors": ((1, N, 3), "FLOAT32"),
                               "singular_values": ((1, N, 3), "FLOAT32"),
                               "quaternions": ((1, N, 4), "FLOAT32"),
                               "colors": ((1, N, 3), "FLOAT32"),
                               "opacities": ((1, N), "FLOAT32")}
    assert package_fields(summary) == {"internal_resolution": "128", "color_space": "linearRGB",
                                       "precision": "fp16"}
    # The whole network is in the program: the ViTs, the convolutional decoders, the composer.
    for op in ("conv", "conv_transpose", "linear", "softmax", "layer_norm", "gelu", "sigmoid"):
        assert summary.ops[op] > 0, op
    assert not any(op.startswith("torch") for op in summary.ops)
    # Only the composer's sRGB -> linear branch computes booleans; nothing needs gather/loops.
    assert set(summary.cpu_only) <= {"less_equal", "logical_not", "select"}


def test_fp32_package_keeps_float32_weights_and_replaces_an_old_package(
        fp16_package, small_predictor, tmp_path):
    path = tmp_path / "small32.mlpackage"
    path.mkdir()
    (path / "stale.txt").write_text("from an earlier export")
    export_coreml(small_predictor, path, precision="fp32")
    assert not (path / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small32.mlpackage"]  # no scratch left
    fp32, fp16 = check_sharp_package(path), check_sharp_package(fp16_package)
    assert package_fields(fp32)["precision"] == "fp32"
    assert fp32.ops["cast"] == 0 < fp16.ops["cast"]  # fp16 casts its float32 inputs and outputs
    weights = sum(p.numel() for p in small_predictor.parameters())
    assert fp32.weight_bytes >= 4 * weights * 0.95
    assert 0.4 < fp16.weight_bytes / fp32.weight_bytes < 0.6


def test_unwritable_output_and_wrong_names_write_nothing(small_predictor, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    with pytest.raises(SplatforgeError, match="cannot write"):
        export_coreml(small_predictor, blocker / "model.mlpackage")
    with pytest.raises(SplatforgeError, match="ends in .mlpackage"):
        export_coreml(small_predictor, tmp_path / "model.onnx")
    with pytest.raises(SplatforgeError, match="precision must be"):
        export_coreml(small_predictor, tmp_path / "model.mlpackage", precision="int8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_checkpoint_of_another_preset_is_refused(tmp_path, capsys):
    out = tmp_path / "default.mlpackage"
    code = run(["export-coreml", "-o", str(out), "--preset", "default",
                "--checkpoint", str(DATA / "sharp_small_state_dict.pt")])
    assert code == 2
    assert "does not match this SHARP network" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_package_of_another_model_is_refused(tmp_path):
    import coremltools as ct
    import torch

    traced = torch.jit.trace(torch.nn.Linear(3, 2).eval(), torch.zeros(1, 3))
    other = ct.convert(traced, inputs=[ct.TensorType(name="x", shape=(1, 3))],
                       convert_to="mlprogram", minimum_deployment_target=ct.target.iOS16)
    other.save(str(tmp_path / "other.mlpackage"))
    with pytest.raises(SplatforgeError, match="not a SHARP network"):
        check_sharp_package(tmp_path / "other.mlpackage")
    with pytest.raises(SplatforgeError, match="not a Core ML package"):
        check_sharp_package(tmp_path)


def test_without_coremltools_export_says_how_to_install_and_predict_works(
        monkeypatch, small_predictor, reference, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "coremltools", None)  # what `import` sees when it is absent
    code = run(["export-coreml", "-o", str(tmp_path / "m.mlpackage"), *SMALL])
    err = capsys.readouterr().err
    assert code == 2 and "pip install 'splatforge[coreml]'" in err
    assert list(tmp_path.iterdir()) == []
    prediction = predict_image(reference["image"], small_predictor,
                               focal_length_px=float(reference["f_px"]))
    np.testing.assert_allclose(prediction.means.numpy(), reference["final_mean_vectors"][0],
                               atol=1e-4)


def test_mac_comparison_script_parses_its_arguments():
    done = subprocess.run([sys.executable, str(REPO / "tools" / "coreml_compare.py"), "--help"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "--compute-units" in done.stdout and "--plan" in done.stdout
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import coreml_compare
    finally:
        sys.path.remove(str(REPO / "tools"))
    args = coreml_compare.parse_args(["x.mlpackage", "--compute-units", "cpu-and-ne", "--plan"])
    assert args.package == Path("x.mlpackage") and args.plan and args.preset == "small"
    import coremltools as ct

    for units in coreml_compare.COMPUTE_UNITS.values():
        assert isinstance(getattr(ct.ComputeUnit, units), ct.ComputeUnit)
    assert tuple(OUTPUT_NAMES) == ("mean_vectors", "singular_values", "quaternions", "colors",
                                   "opacities")
