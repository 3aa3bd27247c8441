"""Tests for lrpcli.io.render: colour mapping, overlays, scaling."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image

from lrpcli.io import render
from lrpcli.io.render import (
    Scale,
    available_cmaps,
    heatmap_rgb,
    overlay_rgb,
    relevance_map,
    render_pair,
    symmetric_scale,
)

POS, NEG, ZERO = (1, 1), (3, 4), (0, 0)


@pytest.fixture()
def rmap() -> np.ndarray:
    """5x6 map: one positive pixel, one (weaker) negative pixel, zero elsewhere."""
    array = np.zeros((5, 6), dtype=np.float32)
    array[POS] = 2.0
    array[NEG] = -1.0
    return array


def test_relevance_map_sums_channels() -> None:
    relevance = torch.arange(24, dtype=torch.float64).reshape(2, 3, 4)
    out = relevance_map(relevance)
    assert out.dtype == np.float32 and out.shape == (3, 4)
    np.testing.assert_allclose(out, relevance.sum(0).numpy())
    assert relevance_map(relevance.numpy()[None]).shape == (3, 4)  # batch of one
    two_d = np.ones((3, 4), dtype=np.float64)
    assert relevance_map(two_d).dtype == np.float32
    with pytest.raises(ValueError, match="shaped"):
        relevance_map(np.zeros(5))


@pytest.mark.parametrize("cmap", ["bwr", "seismic"])
def test_sign_colours(rmap: np.ndarray, cmap: str) -> None:
    rgb = heatmap_rgb(rmap, cmap=cmap).astype(int)
    assert rgb.shape == (5, 6, 3)
    red, blue, zero = rgb[POS], rgb[NEG], rgb[ZERO]
    assert red[0] >= 120 and red[0] > red[2] + 100  # positive: red
    assert blue[2] >= 200 and blue[2] > blue[0] + 100  # negative: blue
    assert tuple(zero) == (255, 255, 255)  # zero: neutral white centre


def test_heatmap_dtype_and_full_scale(rmap: np.ndarray) -> None:
    rgb = heatmap_rgb(rmap)
    assert rgb.dtype == np.uint8
    assert tuple(rgb[POS]) == (255, 0, 0)  # |R| = vmax -> end of the map
    assert tuple(rgb[NEG]) == (128, 128, 255)  # half-way to blue


def test_black_centred_map(rmap: np.ndarray) -> None:
    rgb = heatmap_rgb(rmap, cmap="bwr_black")
    assert tuple(rgb[ZERO]) == (0, 0, 0)
    assert rgb[POS][0] == 255 and rgb[POS][2] == 0
    assert rgb[NEG][2] > 100 and rgb[NEG][0] == 0
    assert "bwr_black" in available_cmaps()


def test_unknown_cmap_lists_choices(rmap: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"unknown colour map 'bwrr'.*bwr.*seismic"):
        heatmap_rgb(rmap, cmap="bwrr")


def test_all_zero_map_is_neutral() -> None:
    zeros = np.zeros((3, 3), dtype=np.float32)
    scale = symmetric_scale(zeros)
    assert scale.vmax == 0.0
    assert (heatmap_rgb(zeros, scale=scale) == 255).all()


def test_symmetric_scale_max_and_percentile() -> None:
    values = np.concatenate([np.linspace(-1.0, 1.0, 101), [-100.0]]).reshape(2, 51)
    assert symmetric_scale(values) == Scale(vmax=100.0, method="max |R|")
    scale = symmetric_scale(values, percentile=50)
    assert scale.vmax == pytest.approx(np.percentile(np.abs(values), 50))
    assert "50th percentile" in scale.method
    # the outlier saturates while the rest keeps contrast
    rgb = heatmap_rgb(values, scale=scale)
    assert tuple(rgb[1, 50]) == (0, 0, 255)
    with pytest.raises(ValueError, match="percentile"):
        symmetric_scale(values, percentile=0)


def test_percentile_of_sparse_map_falls_back_to_max(rmap: np.ndarray) -> None:
    scale = symmetric_scale(rmap, percentile=90)
    assert scale.vmax == 2.0 and "max" in scale.method


def test_overlay_opacity(rmap: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    grey = np.asarray(Image.fromarray(image).convert("L"))
    out = overlay_rgb(image, rmap, max_alpha=0.8)
    assert out.dtype == np.uint8 and out.shape == image.shape
    zero_mask = rmap == 0
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel][zero_mask], grey[zero_mask])
    expected_pos = np.rint(0.2 * grey[POS] + 0.8 * np.array([255, 0, 0]))
    np.testing.assert_array_equal(out[POS], expected_pos)
    full = overlay_rgb(image, rmap, max_alpha=1.0)
    assert tuple(full[POS]) == (255, 0, 0)
    with pytest.raises(ValueError, match="max_alpha"):
        overlay_rgb(image, rmap, max_alpha=1.5)


def test_overlay_resizes_map(rmap: np.ndarray) -> None:
    image = np.full((10, 12, 3), 100, dtype=np.uint8)
    out = overlay_rgb(image, rmap)
    assert out.shape == (10, 12, 3)
    assert (out[0, 0] == 100).all()  # far from any relevance: plain grey
    assert out[3, 3, 0] > out[3, 3, 2]  # near the positive pixel: red tint


def _reference_overlay(image: np.ndarray, rmap: np.ndarray, vmax: float, max_alpha: float, cmap: str) -> np.ndarray:
    """The overlay's formula in float64, one pixel at a time (slow and explicit)."""
    lut = render._lut(cmap).astype(np.float64)
    grey = np.asarray(Image.fromarray(image).convert("L"), dtype=np.float64)
    out = np.empty(image.shape, dtype=np.uint8)
    for y in range(image.shape[0]):
        for x in range(image.shape[1]):
            n = min(1.0, max(-1.0, float(rmap[y, x]) / vmax))
            colour = lut[int(np.rint((n + 1.0) * 128.0))]
            a = max_alpha * abs(n)
            out[y, x] = np.clip(np.rint((1.0 - a) * grey[y, x] + a * colour), 0, 255)
    return out


@pytest.mark.parametrize("cmap", ["bwr", "bwr_black"])
def test_render_pair_matches_the_separate_renderers_and_the_formula(cmap: str) -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)
    rmap = (rng.standard_normal((17, 23)) * rng.random((17, 23)) ** 3).astype(np.float32)
    rmap[2, 3] = np.nan
    rmap[4, 5] = np.inf
    scale = Scale(vmax=float(np.nanpercentile(np.abs(rmap[np.isfinite(rmap)]), 90)), method="test")
    heatmap, overlay = render_pair(image, rmap, cmap=cmap, scale=scale, max_alpha=0.7)
    np.testing.assert_array_equal(heatmap, heatmap_rgb(rmap, cmap=cmap, scale=scale))
    np.testing.assert_array_equal(overlay, overlay_rgb(image, rmap, cmap=cmap, scale=scale, max_alpha=0.7))
    finite = np.nan_to_num(rmap, nan=0.0, posinf=scale.vmax)
    expected = _reference_overlay(image, finite, scale.vmax, 0.7, cmap)
    # float32 arithmetic may round a value lying on .5 the other way: at most one step, rarely
    diff = np.abs(overlay.astype(int) - expected)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.02
    grey = Image.fromarray(image).convert("L").getpixel((3, 2))
    assert tuple(overlay[2, 3]) == (grey, grey, grey)  # NaN: no tint


def test_render_pair_resizes_the_map_for_the_overlay(rmap: np.ndarray) -> None:
    image = np.full((10, 12, 3), 100, dtype=np.uint8)
    heatmap, overlay = render_pair(image, rmap)
    assert heatmap.shape == (5, 6, 3) and overlay.shape == (10, 12, 3)
    np.testing.assert_array_equal(heatmap, heatmap_rgb(rmap))
    np.testing.assert_array_equal(overlay, overlay_rgb(image, rmap))


