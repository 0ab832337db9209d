"""The picture `generate` reads: cut out by alpha and re-centred as LGM does; four views; bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from splatforge.errors import SplatforgeError
from splatforge.generate.images import MIN_SIDE, cut_out, load_picture, load_views


def rgba_picture(height=120, width=160, box=(30, 50, 60, 110)) -> np.ndarray:
    """A red object in the box (top, bottom, left, right) on a transparent, green background."""
    image = np.zeros((height, width, 4), dtype=np.uint8)
    image[..., 1] = 255  # the background's colour must not leak through alpha 0
    top, bottom, left, right = box
    image[top:bottom, left:right] = (255, 0, 0, 255)
    return image


def test_the_object_is_recentred_at_80_percent_over_white(tmp_path):
    path = tmp_path / "object.png"
    Image.fromarray(rgba_picture()).save(path)
    result = cut_out(*load_picture(path))
    assert result.shape == (160, 160, 3)  # square, the picture's longer side
    red = (result[..., 0] > 0.9) & (result[..., 1] < 0.1)
    rows, cols = np.nonzero(red)
    # kiui's box spans 49 x 19 pixels (last row and column excluded): the width becomes
    # int(160 * 0.8) = 128 and the height int(19 * 128 / 49) = 49, centred (kiui truncates
    # w * scale, so 49 * (128 / 49) = 127.99... gives 127)
    assert cols.max() - cols.min() + 1 == pytest.approx(128, abs=1)
    assert rows.max() - rows.min() + 1 == pytest.approx(49, abs=1)
    assert (cols.min() + cols.max()) / 2 == pytest.approx(79.5, abs=1.5)
    assert (rows.min() + rows.max()) / 2 == pytest.approx(79.5, abs=1.5)
    background = result[~red & (np.abs(result - 1).max(-1) < 1e-6)]
    assert len(background) > 0.5 * (160 * 160 - red.sum())  # white, not the hidden green


def test_arrays_and_files_give_the_same_cut_out(tmp_path):
    image = rgba_picture()
    path = tmp_path / "object.png"
    Image.fromarray(image).save(path)
    from_file = cut_out(*load_picture(path))
    from_array = cut_out(*load_picture(image))
    np.testing.assert_allclose(from_file, from_array, atol=1e-6)


def test_an_empty_alpha_channel_is_refused(tmp_path):
    image = rgba_picture()
    image[..., 3] = 0
    path = tmp_path / "empty.png"
    Image.fromarray(image).save(path)
    with pytest.raises(SplatforgeError, match=r"empty.png shows no object: its alpha channel is 0 everywhere"):
        cut_out(*load_picture(path))


def test_a_tiny_object_is_refused():
    with pytest.raises(SplatforgeError, match="the object in the image array is only 4x3 pixels"):
        cut_out(*load_picture(rgba_picture(box=(10, 13, 10, 14))))


@pytest.mark.parametrize("size", [(MIN_SIDE - 1, 100), (100, 8)])
def test_a_too_small_picture_is_refused(tmp_path, size):
    path = tmp_path / "small.png"
    Image.fromarray(np.zeros((*size, 4), dtype=np.uint8)).save(path)
    with pytest.raises(SplatforgeError, match=f"small.png is {size[1]}x{size[0]} pixels; generate needs at least"):
        load_picture(path)


def test_a_too_large_picture_is_refused_before_decoding(tmp_path):
    path = tmp_path / "large.png"
    Image.fromarray(np.zeros((200, 300, 4), dtype=np.uint8)).save(path)
    with pytest.raises(SplatforgeError, match="large.png is 300x200 = 60,000 pixels, over the limit of 50,000"):
        load_picture(path, max_pixels=50_000)


def test_an_opaque_picture_needs_rembg(tmp_path):
    try:
        import rembg  # noqa: F401
        pytest.skip("rembg is installed: opaque pictures are cut out by it")
    except ImportError:
        pass
    path = tmp_path / "photo.jpg"
    Image.fromarray(np.full((64, 64, 3), 200, dtype=np.uint8)).save(path)
    with pytest.raises(SplatforgeError, match=r"photo.jpg has no transparent background.*pip install rembg"):
        cut_out(*load_picture(path))


def _save_views(tmp_path, sizes):
    paths = []
    for i, (h, w) in enumerate(sizes):
        path = tmp_path / f"view{i}.png"
        Image.fromarray(np.full((h, w, 3), 60 * i, dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_four_views_load_and_transparency_becomes_white(tmp_path):
    paths = _save_views(tmp_path, [(64, 64)] * 3)
    Image.fromarray(np.zeros((64, 64, 4), dtype=np.uint8)).save(tmp_path / "clear.png")
    views = load_views([*paths, tmp_path / "clear.png"])
    assert views.shape == (4, 64, 64, 3) and views.dtype == np.float32
    np.testing.assert_allclose(views[1], 60 / 255, atol=1e-6)
    np.testing.assert_allclose(views[3], 1.0)


def test_views_of_different_sizes_are_refused_with_their_names(tmp_path):
    paths = _save_views(tmp_path, [(64, 64), (64, 64), (96, 96), (64, 64)])
    with pytest.raises(SplatforgeError, match=r"same size: .*view0.png 64x64, .*view2.png 96x96"):
        load_views(paths)


def test_non_square_views_and_the_wrong_count_are_refused(tmp_path):
    with pytest.raises(SplatforgeError, match="must be square"):
        load_views(_save_views(tmp_path, [(64, 80)] * 4))
    with pytest.raises(SplatforgeError, match="needs four images"):
        load_views(_save_views(tmp_path, [(64, 64)] * 3))
