"""fit: recovery of a known image, reproducibility, outputs, resolution-free re-rendering, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from splatforge.cli import main
from splatforge.errors import SplatforgeError
from splatforge.fit2d import Gaussians2D, fit_image, load_fit, render_fit, render_gaussians_2d, save_fit


def synthetic_image(k=12, size=48, seed=0, blend="sum"):
    """An image made of k known 2D Gaussians."""
    g = torch.Generator().manual_seed(seed)
    truth = Gaussians2D(
        means=torch.rand(k, 2, generator=g) * 0.8 + 0.1,
        log_scales=torch.log(torch.rand(k, 2, generator=g) * 0.08 + 0.04),
        rotations=torch.rand(k, generator=g) * 3.0,
        colors=torch.rand(k, 3, generator=g),
        opacity_logits=torch.full((k,), 1.0),
        depths=torch.rand(k, generator=g),
    )
    with torch.no_grad():
        image, _ = render_gaussians_2d(truth, size, size, blend)
    return image.clamp(0, 1).numpy()


@pytest.mark.parametrize("blend", ["sum", "alpha"])
def test_known_gaussians_are_recovered_to_40_db(blend):
    image = synthetic_image(blend=blend)
    result = fit_image(image, num_gaussians=48, steps=600, blend=blend, progress=False)
    assert result.metrics["psnr"] >= 40.0, result.metrics


def test_fits_are_reproducible_with_a_seed():
    image = synthetic_image(size=32)
    a = fit_image(image, num_gaussians=30, steps=40, seed=3, progress=False)
    b = fit_image(image, num_gaussians=30, steps=40, seed=3, progress=False)
    c = fit_image(image, num_gaussians=30, steps=40, seed=4, progress=False)
    for name, value in a.gaussians.as_dict().items():
        assert torch.equal(value, b.gaussians.as_dict()[name]), name
    assert not torch.equal(a.gaussians.means, c.gaussians.means)


@pytest.mark.parametrize("loss", ["l1", "l1+ssim"])
def test_other_losses_and_densification_improve_the_fit(loss):
    image = synthetic_image(size=32, seed=1)
    start = fit_image(image, num_gaussians=40, steps=0, loss=loss, progress=False).metrics["psnr"]
    end = fit_image(image, num_gaussians=40, steps=150, loss=loss, densify_every=25, progress=False).metrics["psnr"]
    assert end > start + 5


def test_every_output_is_written_and_loads_back(tmp_path):
    image = synthetic_image(size=40)
    result = fit_image(image, num_gaussians=30, steps=20, progress=False)
    paths = save_fit(result, tmp_path / "fit", target=image)
    assert set(paths) == {"render", "gaussians", "metrics", "compare"}
    metrics = json.loads((tmp_path / "fit" / "metrics.json").read_text())
    assert {"psnr", "ssim", "num_gaussians", "steps", "seconds", "steps_per_second"} <= set(metrics)
    assert np.asarray(Image.open(paths["compare"])).shape == (40, 120, 3)
    gaussians, width, height, blend = load_fit(tmp_path / "fit")
    for name, value in result.gaussians.as_dict().items():
        assert torch.equal(getattr(gaussians, name), value), name
    again = render_fit(tmp_path / "fit")
    np.testing.assert_allclose(again, result.render, atol=1e-6)


def test_rerender_at_four_times_the_size_is_resolution_free(tmp_path):
    image = synthetic_image(size=32)
    result = fit_image(image, num_gaussians=40, steps=100, progress=False)
    save_fit(result, tmp_path)
    big = render_fit(tmp_path, scale=4)
    assert big.shape == (128, 128, 3)
    # block-averaging the 4x render gives back (nearly) the 1x render
    pooled = big.reshape(32, 4, 32, 4, 3).mean(axis=(1, 3))
    assert np.abs(pooled - result.render).mean() < 0.01


def test_cli_fit_writes_outputs_and_scaled_render(tmp_path, capsys):
    Image.fromarray((synthetic_image(size=32) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    code = main(["fit", str(tmp_path / "in.png"), "-o", str(tmp_path / "out"), "--num-gaussians", "20",
                 "--steps", "10", "--render-scale", "2", "--quiet"])
    assert code == 0
    for name in ("render.png", "compare.png", "gaussians.npz", "metrics.json", "render_x2.png"):
        assert (tmp_path / "out" / name).is_file(), name
    assert "PSNR" in capsys.readouterr().out
    assert main(["fit-render", str(tmp_path / "out"), "--scale", "3", "-o", str(tmp_path / "x3.png")]) == 0
    assert Image.open(tmp_path / "x3.png").size == (96, 96)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "CMYK", "LA"])
def test_image_modes_are_converted(tmp_path, mode):
    rgb = Image.fromarray((synthetic_image(size=24) * 255).astype(np.uint8))
    path = tmp_path / f"in.{'tif' if mode in ('CMYK',) else 'png'}"
    (rgb.convert("L").convert(mode) if mode == "I;16" else rgb.convert(mode)).save(path)
    result = fit_image(path, num_gaussians=10, steps=2, progress=False)
    assert result.render.shape == (24, 24, 3)


def test_one_pixel_image(tmp_path):
    result = fit_image(np.full((1, 1, 3), 0.3, np.float32), num_gaussians=3, steps=20, progress=False)
    assert result.render.shape == (1, 1, 3)


@pytest.mark.parametrize(
    "kwargs, message",
    [(dict(num_gaussians=0), "num_gaussians"), (dict(steps=-1), "steps"), (dict(blend="max"), "blend"),
     (dict(loss="l3"), "loss")],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(SplatforgeError, match=message):
        fit_image(np.zeros((8, 8, 3), np.float32), progress=False, **{"num_gaussians": 5, "steps": 1, **kwargs})


@pytest.mark.parametrize("content", [b"", b"definitely not an image", b"\x89PNG\r\n\x1a\n\x00\x00"])
def test_bad_files_are_clear_errors(tmp_path, capsys, content):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    assert main(["fit", str(path), "-o", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "bad.png" in err and "Traceback" not in err


def test_missing_file_and_pixel_limit(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "missing.png"), "--quiet"]) == 2
    Image.new("RGB", (64, 64)).save(tmp_path / "big.png")
    assert main(["fit", str(tmp_path / "big.png"), "--max-pixels", "1000", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "1,000" in err or "1000" in err


def test_arrays_of_other_layouts_are_converted_and_bad_ones_refused():
    grey = np.full((10, 12), 0.5, np.float32)
    assert fit_image(grey, num_gaussians=4, steps=1, progress=False).render.shape == (10, 12, 3)
    rgba = np.full((10, 12, 4), 200, np.uint8)
    assert fit_image(rgba, num_gaussians=4, steps=1, progress=False).render.shape == (10, 12, 3)
    for bad, message in [(np.zeros((0, 5, 3), np.float32), "image must be"),
                         (np.zeros((4, 4, 2), np.float32), "image must be"),
                         (np.full((8, 8, 3), np.nan, np.float32), "NaN")]:
        with pytest.raises(SplatforgeError, match=message):
            fit_image(bad, num_gaussians=4, steps=1, progress=False)
