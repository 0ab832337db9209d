"""predict_image end to end: inputs of every kind, EXIF focal length, unprojection, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from splatforge.errors import SplatforgeError
from splatforge.predict import Prediction, load_photo, predict_image
from splatforge.predict.focal import focal_length_35mm, focal_mm_to_px
from splatforge.predict.unproject import covariances


def photo(h=40, w=60, seed=0) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def jpeg_with_exif(path, image: np.ndarray, orientation=None, f35=None, f=None):
    im = Image.fromarray(image)
    exif = im.getexif()
    if orientation is not None:
        exif[0x0112] = orientation
    sub = exif.get_ifd(0x8769)
    if f35 is not None:
        sub[0xA405] = f35
    if f is not None:
        sub[0x920A] = f
    im.save(path, exif=exif, quality=95)
    return path


def test_pipeline_reproduces_ml_sharp_final_gaussians(small_predictor, reference):
    pred = predict_image(reference["image"], small_predictor,
                         focal_length_px=float(reference["f_px"]))
    assert isinstance(pred, Prediction)
    assert pred.num_gaussians == 2 * 64 * 64
    assert pred.image_size == (108, 72)
    np.testing.assert_allclose(pred.means.numpy(), reference["final_mean_vectors"][0], atol=1e-4, rtol=0)
    np.testing.assert_allclose(pred.scales.numpy(), reference["final_singular_values"][0], atol=1e-4, rtol=0)
    np.testing.assert_allclose(pred.colors.numpy(), reference["final_colors"][0], atol=1e-4, rtol=0)
    np.testing.assert_allclose(pred.opacities.numpy(), reference["final_opacities"][0], atol=1e-4, rtol=0)
    cov = covariances(pred.quats.double(), pred.scales.double()).numpy()
    np.testing.assert_allclose(cov, reference["final_covariances"][0], atol=1e-6, rtol=1e-3)


def test_every_input_kind_gives_the_same_prediction(small_predictor, tmp_path):
    image = photo()
    Image.fromarray(image).save(tmp_path / "p.png")
    by_array = predict_image(image, small_predictor, focal_length_px=50.0)
    by_path = predict_image(tmp_path / "p.png", small_predictor, focal_length_px=50.0)
    by_str = predict_image(str(tmp_path / "p.png"), small_predictor, focal_length_px=50.0)
    by_bytes = predict_image((tmp_path / "p.png").read_bytes(), small_predictor,
                             focal_length_px=50.0)
    by_pil = predict_image(Image.open(tmp_path / "p.png"), small_predictor, focal_length_px=50.0)
    for other in (by_path, by_str, by_bytes, by_pil):
        assert torch.equal(other.means, by_array.means)
    assert by_array.focal_length_px == 50.0


def test_focal_length_rules():
    assert focal_length_35mm({"FocalLengthIn35mmFilm": 26}) == 26
    assert focal_length_35mm({"FocalLengthIn35mmFilm": 0, "FocalLength": 50}) == 50
    assert focal_length_35mm({"FocalLength": 4.2}) == pytest.approx(4.2 * 8.4)
    assert focal_length_35mm({}) == 30.0
    assert focal_length_35mm({"FocalLength": "garbage"}) == 30.0
    assert focal_mm_to_px(36 * 2, 3600, 2400) == pytest.approx(7200)


def test_exif_focal_length_and_orientation(small_predictor, tmp_path):
    image = photo(40, 60)
    path = jpeg_with_exif(tmp_path / "a.jpg", image, orientation=6, f35=50)
    pred = predict_image(path, small_predictor)
    assert pred.image_size == (40, 60)  # rotated to portrait
    assert pred.focal_length_px == pytest.approx(50 * math.hypot(40, 60) / math.hypot(36, 24))
    phone = jpeg_with_exif(tmp_path / "b.jpg", image, f=4.0)
    assert predict_image(phone, small_predictor).focal_length_px == pytest.approx(
        4.0 * 8.4 * math.hypot(60, 40) / math.hypot(36, 24))
    plain = tmp_path / "c.png"
    Image.fromarray(image).save(plain)
    assert predict_image(plain, small_predictor).focal_length_px == pytest.approx(
        30 * math.hypot(60, 40) / math.hypot(36, 24))
    # The same bytes in memory give the same EXIF focal length.
    assert predict_image(path.read_bytes(), small_predictor).focal_length_px == pytest.approx(
        pred.focal_length_px)


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16", "CMYK", "P"])
def test_image_modes_load_as_rgb(mode, tmp_path):
    rgb = Image.fromarray(photo(20, 30))
    if mode == "I;16":
        im = Image.fromarray((np.arange(600).reshape(20, 30) * 100).astype(np.uint16))
    else:
        im = rgb.convert(mode)
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    im.save(path)
    array, _ = load_photo(path)
    assert array.shape == (20, 30, 3) and array.dtype == np.float32
    assert 0 <= array.min() and array.max() <= 1


def test_heic_loads_when_pillow_heif_is_installed(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")
    path = tmp_path / "x.heic"
    try:
        pillow_heif.from_bytes(mode="RGB", size=(30, 20), data=photo(20, 30).tobytes()).save(path)
    except Exception as err:  # noqa: BLE001 - builds without an HEVC encoder
        pytest.skip(f"pillow-heif cannot encode HEIC here: {err}")
    array, _ = load_photo(path)
    assert array.shape == (20, 30, 3)


def test_bad_inputs_are_clear_errors(small_predictor, tmp_path):
    with pytest.raises(SplatforgeError, match="not found"):
        predict_image(tmp_path / "missing.jpg", small_predictor)
    (tmp_path / "text.jpg").write_text("hello")
    with pytest.raises(SplatforgeError, match="not an image"):
        predict_image(tmp_path / "text.jpg", small_predictor)
    Image.fromarray(photo(200, 300)).save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(SplatforgeError, match="truncated|corrupt"):
        predict_image(tmp_path / "cut.jpg", small_predictor)
    with pytest.raises(SplatforgeError, match="pixels"):
        predict_image(tmp_path / "full.jpg", small_predictor, max_pixels=1000)
    with pytest.raises(SplatforgeError, match="pixels"):
        predict_image(photo(200, 300), small_predictor, max_pixels=1000)
    with pytest.raises(SplatforgeError, match="uint8"):
        predict_image(np.zeros((10, 10), np.float32), small_predictor)
    with pytest.raises(SplatforgeError, match="directory"):
        predict_image(tmp_path, small_predictor)
    with pytest.raises(SplatforgeError, match="focal"):
        predict_image(photo(), small_predictor, focal_length_px=-1.0)
    with pytest.raises(SplatforgeError, match="backend"):
        predict_image(photo(), small_predictor, backend="tensorrt")


def test_to_gaussians_matches_the_prediction(small_predictor):
    pred = predict_image(photo(), small_predictor, focal_length_px=40.0)
    g = pred.to_gaussians()
    assert len(g) == pred.num_gaussians and g.sh_degree == 0
    torch.testing.assert_close(g.activated_scales(), pred.scales, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(g.rgb(), pred.srgb_colors(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g.activated_opacities(), pred.opacities.clamp(1e-6, 1 - 1e-6),
                               rtol=1e-5, atol=1e-6)
    assert (pred.means[:, 2] > 0).all()
