"""Tests for lrpcli.io.canvas (whole-photo view, legend, grid) and the crop box of preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lrpcli.io.canvas import View, draw, fit_image, grid, legend_strip, place_map
from lrpcli.io.preprocess import Preprocess, crop_box, preprocess
from lrpcli.io.render import RenderSettings, Scale, display_map, smooth_map

PP = Preprocess(resize=64, crop=56, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
RED, BLUE = np.array([255, 0, 0]), np.array([0, 0, 255])


def _photo(width: int, height: int, squares: list[tuple[int, int, int]]) -> Image.Image:
    """Dark grey photo with white squares ``(x, y, side)`` (top-left corners)."""
    array = np.full((height, width, 3), 40, dtype=np.uint8)
    for x, y, side in squares:
        array[y : y + side, x : x + side] = 255
    return Image.fromarray(array)


@pytest.mark.parametrize("size", [(200, 150), (150, 200), (64, 64), (300, 40), (30, 20), (1000, 10)])
def test_crop_box_is_where_the_crop_comes_from(size: tuple[int, int]) -> None:
    """Resampling the box of the original gives the model's crop back (up to resampling)."""
    width, height = size
    rng = np.random.default_rng(1)
    smooth = np.kron(rng.integers(0, 256, (height // 10 + 1, width // 10 + 1, 3)), np.ones((10, 10, 1)))
    image = Image.fromarray(smooth[:height, :width].astype(np.uint8))
    _, crop = preprocess(image, PP)
    left, top, right, bottom = crop_box(width, height, PP)
    assert right - left == pytest.approx((bottom - top) * 1.0, rel=0.05)  # square in the original
    again = np.asarray(image.resize((PP.crop, PP.crop), Image.Resampling.BILINEAR, box=(left, top, right, bottom)))
    inside = (left >= 0) and (top >= 0) and right <= width and bottom <= height
    if inside:  # the padded case has zeros where the box leaves the image
        assert np.abs(again.astype(int) - crop.astype(int)).mean() < 6


def test_crop_box_of_a_padded_image_reaches_outside_it() -> None:
    left, top, right, bottom = crop_box(30, 20, PP)  # resized to 96x64: the crop (56) fits
    assert 0 <= left < right <= 30 and 0 <= top < bottom <= 20
    small = Preprocess(resize=16, crop=56, mean=(0.5,) * 3, std=(0.5,) * 3)
    left, top, right, bottom = crop_box(30, 20, small)  # 24x16, padded to 56x56
    assert left < 0 and top < 0 and right > 30 and bottom > 20


def test_full_view_puts_the_map_where_the_object_is_and_hatches_the_unseen() -> None:
    """A map that lights up the object (here: the crop's own brightness) is drawn on the whole
    photo exactly over the object; an object outside the centre crop lies in the hatched part."""
    seen_square, unseen_square = (110, 40, 20), (5, 50, 12)  # (x, y, side): centre / far left
    photo = _photo(240, 120, [seen_square, unseen_square])
    _, crop = preprocess(photo, PP)
    rmap = crop.astype(np.float32).mean(axis=2) - 40.0  # positive only on the white square
    settings = RenderSettings(view="full", smooth=0.0, percentile=None, max_side=1024)
    array, factor = fit_image(photo, settings.max_side)
    assert factor == 1.0 and array.shape == (120, 240, 3)
    view = View(array, crop_box(240, 120, PP))
    drawn = draw(rmap, view, settings)
    heat = drawn.heatmap.astype(int)
    assert heat.shape == (120, 240, 3)
    x, y, side = seen_square
    centre = heat[y + side // 2, x + side // 2]
    assert (np.abs(centre - RED) < 40).all(), centre  # the object: full red
    reddish = (heat[..., 0] > 200) & (heat[..., 1] < 100)
    ys, xs = np.nonzero(reddish)
    assert x - 3 <= xs.min() and xs.max() <= x + side + 3 and y - 3 <= ys.min() and ys.max() <= y + side + 3
    ux, uy, us = unseen_square
    patch = heat[uy : uy + us, ux : ux + us]
    assert set(map(tuple, patch.reshape(-1, 3))) <= {(226, 226, 226), (206, 206, 206)}  # hatched
    over = drawn.overlay.astype(int)
    assert over[uy + 2, ux + 2].max() < 255 * 0.4  # the unseen object is darkened in the overlay


def test_fit_image_shrinks_only() -> None:
    big = Image.new("RGB", (3000, 1500))
    array, factor = fit_image(big, 1024)
    assert array.shape == (512, 1024, 3) and factor == pytest.approx(1024 / 3000)
    small = Image.new("RGB", (50, 40))
    assert fit_image(small, 1024)[0].shape == (40, 50, 3)


def test_place_map_clips_to_the_canvas() -> None:
    placed, seen = place_map(np.ones((4, 4), dtype=np.float32), (-2.0, -2.0, 6.0, 6.0), 5, 5)
    assert seen[:, :].sum() == 25 and placed.min() == pytest.approx(1.0)
    placed, seen = place_map(np.ones((4, 4), dtype=np.float32), (1.0, 2.0, 3.0, 4.0), 5, 5)
    assert seen.sum() == 4 and placed[~seen].max() == 0.0


def test_modes_and_smoothing() -> None:
    rmap = np.zeros((9, 9), dtype=np.float32)
    rmap[4, 4], rmap[1, 1] = 2.0, -1.0
    assert display_map(rmap, "positive").min() == 0.0 and display_map(rmap, "absolute")[1, 1] == 1.0
    interior = np.zeros((13, 13), dtype=np.float32)
    interior[6, 6] = 2.0
    smoothed = smooth_map(interior, 1.0)
    assert smoothed.sum() == pytest.approx(2.0, abs=1e-5)  # the weights sum to one
    assert 0 < smoothed[6, 6] < 2.0 and smoothed[6, 7] > 0 and smoothed[6, 7] == pytest.approx(smoothed[7, 6])
    with pytest.raises(ValueError, match="mode"):
        display_map(rmap, "sign")
    for mode in ("positive", "absolute"):
        heat = draw(rmap, View(np.zeros((9, 9, 3), np.uint8)), RenderSettings(mode=mode, smooth=0, view="crop")).heatmap
        assert not ((heat[..., 2] > 200) & (heat[..., 0] < 100)).any()  # no blue in these modes


def test_legend_and_grid_shapes() -> None:
    settings = RenderSettings(legend=True, view="crop")
    strip = legend_strip(200, Scale(0.5, "99th percentile of |R|"), settings, label="espresso")
    assert strip.shape[1] == 200 and strip.dtype == np.uint8
    assert (strip[..., 0] > 200).any() and (strip[..., 2] > 200).any()  # red and blue ends
    drawn = draw(np.ones((8, 8), np.float32), View(np.zeros((8, 8, 3), np.uint8)), settings)
    assert drawn.heatmap.shape[0] > 8 and drawn.heatmap.shape[1] == 8  # the strip below
    tiles = [(np.zeros((50, 100, 3), np.uint8), "photo\nsecond"), (np.zeros((50, 50, 3), np.uint8), "map")]
    picture = grid(tiles, height=60)
    assert picture.shape[1] == 8 + (120 + 8) + (60 + 8)
    with pytest.raises(ValueError):
        grid([])
