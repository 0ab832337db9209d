"""save_ply writes ml-sharp's layout: compared with a PLY written by ml-sharp's own save_ply."""

from __future__ import annotations

import numpy as np
import torch

from splatforge.io.ply import read_ply
from splatforge.io.ply_format import read_ply_elements
from splatforge.predict import Prediction, save_ply
from splatforge.predict.unproject import covariances, quaternions_to_matrices

from .conftest import DATA


def reference_prediction(reference) -> Prediction:
    image = reference["image"]
    return Prediction(
        means=torch.from_numpy(reference["final_mean_vectors"][0]),
        scales=torch.from_numpy(reference["final_singular_values"][0]),
        quats=torch.from_numpy(reference["final_quaternions"][0]),
        colors=torch.from_numpy(reference["final_colors"][0]),
        opacities=torch.from_numpy(reference["final_opacities"][0]),
        focal_length_px=float(reference["f_px"]),
        image_size=(image.shape[1], image.shape[0]),
    )


def header(path) -> bytes:
    data = path.read_bytes()
    return data[: data.index(b"end_header\n")]


def test_layout_and_values_match_ml_sharp(reference, tmp_path):
    ours_path = save_ply(reference_prediction(reference), tmp_path / "ours.ply")
    ref_path = DATA / "sharp_small_reference.ply"
    assert header(ours_path) == header(ref_path)
    assert ours_path.stat().st_size == ref_path.stat().st_size
    ours, _, _ = read_ply_elements(ours_path)
    ref, _, _ = read_ply_elements(ref_path)
    assert list(ours) == list(ref) == ["vertex", "extrinsic", "intrinsic", "image_size", "frame",
                                       "disparity", "color_space", "version"]
    for name in ref:
        for field in ref[name].dtype.names:
            np.testing.assert_allclose(ours[name][field], ref[name][field], rtol=1e-5, atol=1e-5,
                                       err_msg=f"{name}.{field}")


def test_pipeline_ply_matches_ml_sharp_up_to_quaternion_sign(small_predictor, reference, tmp_path):
    from splatforge.predict import predict_image

    pred = predict_image(reference["image"], small_predictor,
                         focal_length_px=float(reference["f_px"]))
    ours, _, _ = read_ply_elements(save_ply(pred, tmp_path / "p.ply"))
    ref, _, _ = read_ply_elements(DATA / "sharp_small_reference.ply")
    for field in ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
                  "scale_0", "scale_1", "scale_2"):
        np.testing.assert_allclose(ours["vertex"][field], ref["vertex"][field], atol=2e-4, rtol=1e-4,
                                   err_msg=field)
    for name in ("intrinsic", "image_size", "frame", "color_space", "version", "extrinsic"):
        np.testing.assert_array_equal(ours[name][name], ref[name][name])
    np.testing.assert_allclose(ours["disparity"]["disparity"], ref["disparity"]["disparity"],
                               rtol=1e-4)

    def cov(v):
        q = torch.from_numpy(np.stack([v[f"rot_{i}"] for i in range(4)], -1)).double()
        s = torch.from_numpy(np.stack([v[f"scale_{i}"] for i in range(3)], -1)).double().exp()
        return covariances(q, s)

    torch.testing.assert_close(cov(ours["vertex"]), cov(ref["vertex"]), atol=1e-6, rtol=1e-3)


def test_splatforge_reads_the_file_back(reference, tmp_path):
    pred = reference_prediction(reference)
    g = read_ply(save_ply(pred, tmp_path / "x.ply"))
    assert len(g) == pred.num_gaussians and g.sh_degree == 0
    torch.testing.assert_close(g.means, pred.means)
    torch.testing.assert_close(g.rgb(), pred.srgb_colors(), rtol=1e-5, atol=1e-5)
    assert quaternions_to_matrices(g.quats.double()).shape == (pred.num_gaussians, 3, 3)


def test_numba_vertex_rows_match_the_torch_reference(reference):
    from splatforge.predict.ply import vertex_array, vertex_array_torch

    pred = reference_prediction(reference)
    gen = torch.Generator().manual_seed(0)
    # Colours across both branches of the sRGB curve, opacities near 0 and 1.
    pred.colors = torch.rand(pred.num_gaussians, 3, generator=gen) ** 4
    pred.opacities = torch.rand(pred.num_gaussians, generator=gen).clamp(1e-6, 1 - 1e-6)
    for space in ("linearRGB", "sRGB"):
        pred.color_space = space
        got, expected = vertex_array(pred), vertex_array_torch(pred)
        assert got.dtype == expected.dtype
        for field in expected.dtype.names:
            np.testing.assert_allclose(got[field], expected[field], rtol=2e-6, atol=2e-6,
                                       err_msg=f"{space} {field}")
