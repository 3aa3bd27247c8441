"""Turn relevance maps into pictures: heatmaps, overlays, colour maps and scales (no files).

Colour convention: relevance is divided by a symmetric scale ``vmax`` and clipped
to [-1, 1], then mapped to [0, 1] so that zero relevance lands on the colour map's
centre. With the diverging maps ``bwr`` and ``seismic`` positive relevance is red,
negative is blue and zero is white.

Besides every matplotlib colour map this module provides ``bwr_black``: blue for
negative, black for zero, red for positive relevance (a dark-centred map that
suits heatmaps shown on their own on dark backgrounds; overlays fade to the
image anyway because their opacity grows with ``|R|``).

What is drawn is the *display map*: the relevance map in the chosen ``mode`` (signed,
positive part, or absolute value), optionally smoothed for the eye (a Gaussian of ``smooth``
map pixels; the saved ``.npy`` is never smoothed). Where the map lies on a larger picture
(:mod:`lrpcli.io.canvas`), pixels outside it are "not seen" and drawn apart.

Only matplotlib's colour-map objects are used (no pyplot, no backend).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache

import matplotlib
import numpy as np
import torch
from matplotlib.colors import Colormap, LinearSegmentedColormap
from PIL import Image

__all__ = [
    "CUSTOM_CMAPS",
    "MODES",
    "RECOMMENDED_CMAPS",
    "VIEWS",
    "RenderSettings",
    "Scale",
    "available_cmaps",
    "display_map",
    "get_cmap",
    "heatmap_rgb",
    "overlay_rgb",
    "relevance_map",
    "render_pair",
    "resize_map",
    "smooth_map",
    "symmetric_scale",
]

MODES: tuple[str, ...] = ("signed", "positive", "absolute")
"""What a map shows: R with its sign, its positive part max(R, 0), or |R|."""
VIEWS: tuple[str, ...] = ("full", "crop")
"""Where a map is drawn: on the whole photo (the crop's place in it), or on the model's crop."""

CUSTOM_CMAPS: dict[str, Colormap] = {
    "bwr_black": LinearSegmentedColormap.from_list(
        "bwr_black", [(0.0, 0.0, 1.0), (0.0, 0.0, 0.0), (1.0, 0.0, 0.0)], N=257
    ),
}
"""Colour maps defined here (not registered in matplotlib's global registry)."""
CUSTOM_CMAPS["bwr_black_r"] = CUSTOM_CMAPS["bwr_black"].reversed()

RECOMMENDED_CMAPS: tuple[str, ...] = ("bwr", "seismic", "coolwarm", "RdBu_r", "bwr_black")
"""Diverging maps that show the sign of relevance well (red = positive)."""

_LUT_SIZE = 257  # odd, so that the exact centre of the map (zero relevance) is an entry


def available_cmaps() -> list[str]:
    """All accepted colour-map names: ours plus every matplotlib colour map, sorted."""
    return sorted(set(CUSTOM_CMAPS) | set(matplotlib.colormaps))


def get_cmap(name: str) -> Colormap:
    """Look up a colour map by name; unknown names raise ``ValueError`` listing choices."""
    if name in CUSTOM_CMAPS:
        return CUSTOM_CMAPS[name]
    if name in matplotlib.colormaps:
        return matplotlib.colormaps[name]
    close = difflib.get_close_matches(name, available_cmaps(), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(
        f"unknown colour map {name!r}.{hint} Valid choices: {', '.join(RECOMMENDED_CMAPS)} "
        f"(recommended), or any of: {', '.join(available_cmaps())}"
    )


@lru_cache(maxsize=32)
def _lut(name: str) -> np.ndarray:
    """(257, 3) uint8 colour table sampled evenly over the map, centre entry at 0.5."""
    cmap = get_cmap(name)
    if isinstance(cmap, LinearSegmentedColormap) and cmap.N != _LUT_SIZE:
        cmap = cmap.resampled(_LUT_SIZE)
    rgba = np.asarray(cmap(np.linspace(0.0, 1.0, _LUT_SIZE)), dtype=np.float64)
    table = np.clip(np.rint(rgba[:, :3] * 255.0), 0, 255).astype(np.uint8)
    table.flags.writeable = False  # shared through the cache
    return table


# --------------------------------------------------------------------------- maps & scales


def relevance_map(relevance: torch.Tensor | np.ndarray) -> np.ndarray:
    """Collapse relevance to one value per pixel.

    Accepts ``(C, H, W)`` (summed over channels), ``(H, W)``, or ``(1, C, H, W)``
    (a batch of one); returns a float32 ``(H, W)`` array.
    """
    if isinstance(relevance, torch.Tensor):
        array = relevance.detach().to("cpu", torch.float32).numpy()
    else:
        array = np.asarray(relevance, dtype=np.float32)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3:
        array = array.sum(axis=0, dtype=np.float32)
    elif array.ndim != 2:
        raise ValueError(
            f"relevance must be shaped (C, H, W), (H, W) or (1, C, H, W), got {tuple(array.shape)}"
        )
    return np.ascontiguousarray(array, dtype=np.float32)


def smooth_map(rmap: np.ndarray, sigma: float) -> np.ndarray:
    """``rmap`` blurred by a Gaussian of ``sigma`` pixels (normalised taps, reflected at the edges).

    For display only: it hides the stride grid that strided convolutions leave in LRP maps.
    ``sigma`` 0 returns the map unchanged; NaN and ±inf count as 0.
    """
    array = np.asarray(rmap, dtype=np.float32)
    if sigma <= 0.0:
        return array
    radius = max(1, int(3.0 * sigma + 0.5))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1, dtype=np.float64) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    out = np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)
    for axis in (0, 1):
        n = out.shape[axis]
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="reflect" if n > radius else "edge")
        acc = np.zeros_like(out)
        for k, w in enumerate(taps):
            acc += w * (padded[k : k + n] if axis == 0 else padded[:, k : k + n])
        out = acc
    return out


def display_map(rmap: np.ndarray, mode: str = "signed", smooth: float = 0.0) -> np.ndarray:
    """The map that is drawn: ``rmap`` in ``mode`` (see :data:`MODES`), then smoothed."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    array = np.asarray(rmap, dtype=np.float32)
    if mode == "positive":
        array = np.maximum(array, 0.0)
    elif mode == "absolute":
        array = np.abs(array)
    return smooth_map(array, smooth)


@dataclass(frozen=True)
class RenderSettings:
    """How heatmaps are drawn.

    ``percentile`` None scales to max |R|. The overlay's opacity is
    ``overlay_alpha · (|R| / vmax) ** opacity_exponent`` over a grey copy of the image at
    ``contrast`` (1: unchanged, lower: faded towards mid-grey so colours stand out).
    ``view`` full draws on the whole photo, at most ``max_side`` pixels on its long side.
    """

    cmap: str = "bwr"
    percentile: float | None = 99.0
    overlay_alpha: float = 0.8
    mode: str = "signed"
    smooth: float = 1.5
    opacity_exponent: float = 0.7
    contrast: float = 0.6
    view: str = "full"
    max_side: int = 1024
    legend: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"render.mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.view not in VIEWS:
            raise ValueError(f"render.view must be one of {', '.join(VIEWS)}, got {self.view!r}")
        if self.percentile is not None and not 0.0 < self.percentile <= 100.0:
            raise ValueError(f"render.percentile must be in (0, 100], got {self.percentile}; e.g. 99")
        for name, low, high in (("overlay_alpha", 0.0, 1.0), ("contrast", 0.0, 1.0)):
            if not low <= getattr(self, name) <= high:
                raise ValueError(f"render.{name} must be between {low:g} and {high:g}, got {getattr(self, name)}")
        if self.smooth < 0.0 or self.opacity_exponent <= 0.0 or self.max_side < 16:
            raise ValueError(
                "render.smooth must be >= 0, render.opacity_exponent > 0 and render.max_side >= 16, got "
                f"{self.smooth}, {self.opacity_exponent}, {self.max_side}"
            )


@dataclass
class Scale:
    """Symmetric colour scale: relevance ``vmax`` maps to full red, ``-vmax`` to full blue.

    ``method`` describes how ``vmax`` was chosen (for logs and reports).
    """

    vmax: float
    method: str


def symmetric_scale(rmap: np.ndarray, percentile: float | None = None) -> Scale:
    """Choose ``vmax`` for ``rmap``: the maximum of ``|R|``, or its ``percentile``-th percentile.

    Non-finite values are ignored. If the percentile is 0 but the map is not
    (a sparse map), the maximum is used instead. An all-zero map gives ``vmax = 0``,
    which the renderers draw as neutral (the colour map's centre).
    """
    values = np.abs(np.asarray(rmap))
    finite = np.isfinite(values)
    if not finite.all():
        values = values[finite]
    peak = float(values.max()) if values.size else 0.0
    if percentile is None:
        return Scale(vmax=peak, method="max |R|")
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}; e.g. 99.5")
    vmax = float(np.percentile(values.astype(np.float64), percentile)) if values.size else 0.0
    if vmax == 0.0 and peak > 0.0:
        return Scale(vmax=peak, method=f"max |R| (the {percentile:g}th percentile of |R| is 0)")
    return Scale(vmax=vmax, method=f"{percentile:g}th percentile of |R|")


def _normalised(rmap: np.ndarray, scale: Scale | None) -> np.ndarray:
    """``rmap / vmax`` clipped to [-1, 1] (float32); zeros if ``vmax`` is 0; NaN -> 0."""
    array = np.asarray(rmap)
    if array.ndim != 2:
        raise ValueError(
            f"relevance map must be 2-D (H, W), got {array.shape}; see relevance_map()"
        )
    if scale is None:
        scale = symmetric_scale(array)
    vmax = float(scale.vmax)
    if not np.isfinite(vmax) or vmax <= 0.0:
        return np.zeros(array.shape, dtype=np.float32)
    out = np.multiply(array, 1.0 / vmax, dtype=np.float32)  # ±inf stay ±inf, then clip to ±1
    np.clip(out, -1.0, 1.0, out=out)
    return np.nan_to_num(out, copy=False, nan=0.0)


def _colours(normalised: np.ndarray, cmap: str) -> np.ndarray:
    """The colour-map entry of every pixel, ``uint8`` ``(H, W, 3)``: [-1, 1] onto the table's 257 rows."""
    half = np.float32((_LUT_SIZE - 1) / 2)
    index = np.rint(normalised * half + half).astype(np.intp)
    return np.take(_lut(cmap), index, axis=0)


def heatmap_rgb(rmap: np.ndarray, *, cmap: str = "bwr", scale: Scale | None = None) -> np.ndarray:
    """Colour a ``(H, W)`` relevance map; returns ``uint8`` ``(H, W, 3)``.

    ``scale`` defaults to :func:`symmetric_scale` (max ``|R|``). Zero relevance is
    the colour map's centre (white for ``bwr``, black for ``bwr_black``).
    """
    return _colours(_normalised(rmap, scale), cmap)


def resize_map(rmap: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear (antialiased when shrinking) resize of a float map to (height, width)."""
    image = Image.fromarray(np.ascontiguousarray(rmap, dtype=np.float32))
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)


def _as_rgb_image(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (0..255), got {array.dtype}")
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"image must be shaped (H, W, 3) RGB, got {array.shape}")
    return array


def _blend(
    rgb: np.ndarray,
    normalised: np.ndarray,
    colours: np.ndarray,
    max_alpha: float,
    exponent: float = 1.0,
    contrast: float = 1.0,
) -> np.ndarray:
    """``(1 − α)·grey + α·colour`` with ``α = max_alpha·|normalised|**exponent``, rounded to
    ``uint8``; ``grey`` is the image's luminance at ``contrast`` around mid-grey."""
    grey = np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).convert("L"), dtype=np.float32)[..., None]
    if contrast != 1.0:
        grey = grey * np.float32(contrast) + np.float32(127.5 * (1.0 - contrast))
    alpha = np.abs(normalised)
    if exponent != 1.0:
        np.power(alpha, np.float32(exponent), out=alpha)
    alpha *= np.float32(max_alpha)
    blended = colours.astype(np.float32)
    blended -= grey
    blended *= alpha[..., None]
    blended += grey
    np.rint(blended, out=blended)
    np.clip(blended, 0.0, 255.0, out=blended)
    return blended.astype(np.uint8)


def overlay_rgb(
    image: np.ndarray,
    rmap: np.ndarray,
    *,
    cmap: str = "bwr",
    scale: Scale | None = None,
    max_alpha: float = 0.8,
    exponent: float = 1.0,
    contrast: float = 1.0,
) -> np.ndarray:
    """Blend the heatmap over a greyscale copy of ``image`` (``uint8`` ``(H, W, 3)``).

    Per-pixel opacity is ``max_alpha * |R| / vmax`` (clipped), so pixels with zero
    relevance show the grey image unchanged (grey = Pillow's ``"L"`` conversion).
    ``scale`` defaults to max ``|R|`` of ``rmap``; a map of another size is resized
    bilinearly to the image. ``exponent`` < 1 raises the opacity of weak relevance;
    ``contrast`` < 1 fades the grey image. Returns ``uint8`` ``(H, W, 3)``.
    """
    return render_pair(
        image, rmap, cmap=cmap, scale=scale, max_alpha=max_alpha, exponent=exponent, contrast=contrast
    )[1]


def render_pair(
    image: np.ndarray,
    rmap: np.ndarray,
    *,
    cmap: str = "bwr",
    scale: Scale | None = None,
    max_alpha: float = 0.8,
    exponent: float = 1.0,
    contrast: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(heatmap_rgb(rmap), overlay_rgb(image, rmap))`` with the same arguments, sharing the
    colour lookup when the map and the image have the same size."""
    if not 0.0 <= max_alpha <= 1.0:
        raise ValueError(f"max_alpha must be between 0 and 1, got {max_alpha}")
    rgb = _as_rgb_image(image)
    rmap = np.asarray(rmap)
    if rmap.ndim != 2:
        raise ValueError(f"relevance map must be 2-D (H, W), got {rmap.shape}; see relevance_map()")
    if scale is None:
        scale = symmetric_scale(rmap)
    normalised = _normalised(rmap, scale)
    heatmap = _colours(normalised, cmap)
    if rmap.shape == rgb.shape[:2]:
        return heatmap, _blend(rgb, normalised, heatmap, max_alpha, exponent, contrast)
    resized = _normalised(resize_map(rmap, *rgb.shape[:2]), scale)
    return heatmap, _blend(rgb, resized, _colours(resized, cmap), max_alpha, exponent, contrast)
