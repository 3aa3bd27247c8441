"""Pictures around a relevance map: the whole-photo view, the colour-bar legend, titled grids.

* :class:`View` is what a map is drawn on: the model's crop, or the whole photo (shrunk to at
  most ``max_side`` pixels) with the box where the crop lies in it. Outside that box the model
  saw nothing: the heatmap shows light grey hatching there, the overlay the photo darkened.
* :func:`draw` turns a map and a view into the heatmap and the overlay, with the settings'
  mode, smoothing, scale, opacity and legend.
* :func:`grid` puts titled pictures side by side (``lrp explain --composites``).

The text uses matplotlib's bundled DejaVu Sans (no system fonts needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lrpcli.io.render import (
    RenderSettings,
    Scale,
    display_map,
    heatmap_rgb,
    render_pair,
    resize_map,
    symmetric_scale,
)

__all__ = ["Drawn", "View", "draw", "fit_image", "grid", "legend_strip", "place_map"]

_UNSEEN_DIM = 0.35  # brightness of the photo outside the crop, in the overlay
_HATCH = (226, 226, 226), (206, 206, 206)  # the heatmap's "not seen" stripes
_HATCH_PERIOD = 8


@dataclass(frozen=True)
class View:
    """What a map is drawn on: ``image`` (uint8 ``(H, W, 3)``) and where the map lies in it.

    ``box`` (left, top, right, bottom, in ``image`` pixels) is None when ``image`` is the
    model's crop itself.
    """

    image: np.ndarray
    box: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class Drawn:
    """A drawn map: the heatmap, the overlay and the colour scale they share."""

    heatmap: np.ndarray
    overlay: np.ndarray
    scale: Scale


def fit_image(image: Image.Image, max_side: int) -> tuple[np.ndarray, float]:
    """``image`` as RGB uint8, shrunk (never enlarged) so that its long side is at most
    ``max_side``; returns the array and the factor applied to coordinates."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    width, height = rgb.size
    factor = min(1.0, max_side / max(width, height))
    if factor < 1.0:
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        rgb = rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        factor = size[0] / width
    return np.ascontiguousarray(np.asarray(rgb)), factor


def place_map(
    rmap: np.ndarray, box: tuple[float, float, float, float], height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Resize ``rmap`` onto ``box`` of a ``height`` x ``width`` canvas (bilinear).

    Returns the canvas map (0 outside the box) and the boolean mask of pixels inside it (the
    part of the canvas the model saw). Parts of the box outside the canvas are cut off.
    """
    left, top, right, bottom = (int(round(v)) for v in box)
    placed = np.zeros((height, width), dtype=np.float32)
    seen = np.zeros((height, width), dtype=bool)
    if right <= left or bottom <= top:
        return placed, seen
    resized = resize_map(rmap, bottom - top, right - left)
    x0, y0 = max(0, left), max(0, top)
    x1, y1 = min(width, right), min(height, bottom)
    if x1 > x0 and y1 > y0:
        placed[y0:y1, x0:x1] = resized[y0 - top : y1 - top, x0 - left : x1 - left]
        seen[y0:y1, x0:x1] = True
    return placed, seen


def _hatch(height: int, width: int) -> np.ndarray:
    """Light grey diagonal stripes, uint8 ``(H, W, 3)``: "the model did not see this"."""
    yy, xx = np.indices((height, width))
    stripe = ((xx + yy) // (_HATCH_PERIOD // 2)) % 2 == 0
    out = np.empty((height, width, 3), dtype=np.uint8)
    out[stripe] = _HATCH[0]
    out[~stripe] = _HATCH[1]
    return out


def draw(rmap: np.ndarray, view: View, settings: RenderSettings, *, label: str | None = None) -> Drawn:
    """Heatmap and overlay of ``rmap`` (the model-input map) on ``view`` with ``settings``.

    The scale is chosen on the display map (mode and smoothing applied) at the map's own
    resolution, so it does not depend on the size of the photo. ``label`` names the explained
    class in the legend (when ``settings.legend``).
    """
    shown = display_map(rmap, settings.mode, settings.smooth)
    scale = symmetric_scale(shown, settings.percentile)
    options = {
        "cmap": settings.cmap,
        "scale": scale,
        "max_alpha": settings.overlay_alpha,
        "exponent": settings.opacity_exponent,
        "contrast": settings.contrast,
    }
    if view.box is None:
        heatmap, overlay = render_pair(view.image, shown, **options)
    else:
        height, width = view.image.shape[:2]
        placed, seen = place_map(shown, view.box, height, width)
        heatmap, overlay = render_pair(view.image, placed, **options)
        unseen = ~seen
        heatmap[unseen] = _hatch(height, width)[unseen]
        overlay[unseen] = np.rint(overlay[unseen] * _UNSEEN_DIM).astype(np.uint8)
    if settings.legend:
        strip = legend_strip(heatmap.shape[1], scale, settings, label=label)
        heatmap = np.concatenate([heatmap, strip], axis=0)
        overlay = np.concatenate([overlay, legend_strip(overlay.shape[1], scale, settings, label=label)], axis=0)
    return Drawn(heatmap, overlay, scale)


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    try:
        return ImageFont.truetype(str(path), size)
    except OSError:  # no FreeType in this Pillow: its built-in bitmap font
        return ImageFont.load_default()


def _text_width(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> int:
    left, _, right, _ = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=font)
    return int(right - left)


def _fit_text(text: str, width: int, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> str:
    """``text`` shortened with an ellipsis until it fits ``width`` pixels."""
    if _text_width(text, font) <= width:
        return text
    while len(text) > 1 and _text_width(text + "…", font) > width:
        text = text[:-1]
    return text + "…"


def legend_strip(width: int, scale: Scale, settings: RenderSettings, *, label: str | None = None) -> np.ndarray:
    """A white strip ``width`` pixels wide: the colour bar from its low to its high end with the
    scale's values, and what the colours mean (uint8 ``(h, width, 3)``)."""
    size = max(9, min(16, width // 28))
    font = _font(size)
    pad = max(3, size // 3)
    bar_h = max(6, size // 2 + 2)
    height = pad + bar_h + pad + size + pad + size + pad
    strip = Image.new("RGB", (width, height), (255, 255, 255))
    ink = ImageDraw.Draw(strip)
    low = 0.0 if settings.mode != "signed" else -1.0
    bar_w = max(2, width - 2 * pad)
    ramp = np.linspace(low, 1.0, bar_w, dtype=np.float32)[None, :].repeat(bar_h, axis=0)
    bar = heatmap_rgb(ramp, cmap=settings.cmap, scale=Scale(1.0, "legend"))
    strip.paste(Image.fromarray(bar), (pad, pad))
    ink.rectangle((pad, pad, pad + bar_w - 1, pad + bar_h - 1), outline=(120, 120, 120))
    vmax = scale.vmax
    y = pad + bar_h + pad
    ends = (f"{-vmax:.3g}" if low < 0 else "0", f"{vmax:.3g}")
    ink.text((pad, y), ends[0], fill=(0, 0, 0), font=font)
    ink.text((pad + bar_w - _text_width(ends[1], font), y), ends[1], fill=(0, 0, 0), font=font)
    if low < 0:
        ink.text((pad + bar_w // 2 - _text_width("0", font) // 2, y), "0", fill=(0, 0, 0), font=font)
    target = f" {label}" if label else " the class"
    meaning = {
        "signed": f"red: for{target} · blue: against",
        "positive": f"red: for{target} (negative part not shown)",
        "absolute": f"|R|: evidence for or against{target}",
    }[settings.mode]
    text = _fit_text(f"{meaning} · full colour at {scale.method}", width - 2 * pad, font)
    ink.text((pad, y + size + pad), text, fill=(60, 60, 60), font=font)
    return np.asarray(strip)


def grid(pictures: list[tuple[np.ndarray, str]], *, height: int = 300, gap: int = 8) -> np.ndarray:
    """``pictures`` (uint8 RGB, each with its title) side by side on white, each scaled to
    ``height`` pixels with its aspect ratio kept (uint8 ``(H, W, 3)``). A title's first line is
    printed above its picture in black, a second line (after ``\n``) below it in grey."""
    if not pictures:
        raise ValueError("grid needs at least one picture")
    size = max(11, height // 20)
    font, small = _font(size), _font(max(9, size - 2))
    line = size + gap
    tiles = []
    for array, title in pictures:
        h, w = array.shape[:2]
        tile_w = max(1, round(w * height / h))
        tiles.append((Image.fromarray(array).resize((tile_w, height), Image.Resampling.BILINEAR), title))
    total_w = gap + sum(t.width + gap for t, _ in tiles)
    canvas = Image.new("RGB", (total_w, gap + line + height + line + gap), (255, 255, 255))
    ink = ImageDraw.Draw(canvas)
    x = gap
    for tile, title in tiles:
        first, _, second = title.partition("\n")
        ink.text((x, gap), _fit_text(first, tile.width, font), fill=(0, 0, 0), font=font)
        canvas.paste(tile, (x, gap + line))
        if second:
            ink.text((x, gap + line + height + gap // 2), _fit_text(second, tile.width, small), fill=(90, 90, 90), font=small)
        x += tile.width + gap
    return np.asarray(canvas)
