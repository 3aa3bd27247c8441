"""One image's pictures and files: the view it is drawn on, its heatmap, overlay, comparison grid
and ``.npy``, written atomically and marked as ours (a PNG text chunk naming lrpcli and the image).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lrpcli import __version__
from lrpcli.io.canvas import View, draw, fit_image, grid
from lrpcli.io.files import png_text, write_npy, write_png
from lrpcli.io.preprocess import Preprocess, crop_box
from lrpcli.io.render import RenderSettings, relevance_map
from lrpcli.run.outputs import OutputPaths

__all__ = ["MARK_KEY", "Comparison", "Written", "is_our_png", "make_view", "write_outputs"]

MARK_KEY = "lrpcli:source"
"""PNG text keyword of our pictures: the image they explain."""


@dataclass(frozen=True)
class Comparison:
    """Another composite's map of the same image and class, for the comparison grid."""

    name: str
    relevance: np.ndarray
    pixel_share: float | None


@dataclass(frozen=True)
class Written:
    """What writing one image's outputs added: the files (relative to --out), the scale, the time."""

    outputs: dict[str, str]
    render: dict[str, Any]
    write_s: float
    #: the further maps' files (``--target topK``), in order
    more: list[dict[str, str]] = field(default_factory=list)


def make_view(image: Image.Image, crop: np.ndarray, pp: Preprocess, settings: RenderSettings) -> tuple[View, list[float]]:
    """The view ``settings.view`` asks for, and the crop's box in the original image's pixels."""
    box = list(crop_box(image.width, image.height, pp))
    if settings.view == "crop":
        return View(crop), box
    photo, factor = fit_image(image, settings.max_side)
    return View(photo, tuple(v * factor for v in box)), box  # type: ignore[arg-type]


def is_our_png(path: Path) -> bool:
    """Whether ``path`` is a picture lrpcli wrote (its PNG text names lrpcli)."""
    if path.suffix.lower() != ".png":
        return False
    text = png_text(path)
    return MARK_KEY in text and text.get("Software", "").startswith("lrpcli")


def _mark(source: str, kind: str) -> dict[str, str]:
    return {"Software": f"lrpcli {__version__}", MARK_KEY: source, "lrpcli:kind": kind}


def write_outputs(
    relevance: np.ndarray,
    view: View,
    paths: OutputPaths,
    settings: RenderSettings,
    *,
    out_dir: Path,
    source: str,
    label: str,
    comparisons: list[Comparison] | None = None,
    photo_title: str = "",
    crop: list[float] | None = None,
    layers: dict[str, np.ndarray] | None = None,
) -> Written:
    """Draw and write one image's heatmap and overlay (and comparison grid, ``.npy``, and the
    relevance at each ``--layer``)."""
    start = time.perf_counter()
    drawn = draw(relevance_map(relevance), view, settings, label=label)
    write_png(paths.heatmap, drawn.heatmap, filter="none", text=_mark(source, "heatmap"))
    write_png(paths.overlay, drawn.overlay, text=_mark(source, "overlay"))

    if paths.compare is not None:
        tiles = [(view.image, photo_title or Path(source).name)]
        for c in comparisons or []:
            share = f"\n{100 * c.pixel_share:.2g} % of f(x) reaches the pixels" if isinstance(c.pixel_share, float) else ""
            tiles.append((draw(relevance_map(c.relevance), view, settings, label=label).heatmap, c.name + share))
        write_png(paths.compare, grid(tiles), text=_mark(source, "compare"))
    if paths.relevance is not None:
        write_npy(paths.relevance, np.ascontiguousarray(relevance, dtype=np.float32))
    for name, path in paths.layers.items():
        write_npy(path, np.ascontiguousarray((layers or {})[name], dtype=np.float32))
    outputs = {key: path.relative_to(out_dir).as_posix() for key, path in paths.named().items()}
    render: dict[str, Any] = {
        "cmap": settings.cmap,
        "vmax": drawn.scale.vmax,
        "scale": drawn.scale.method,
        "mode": settings.mode,
        "smooth": settings.smooth,
        "view": settings.view,
        "legend": settings.legend,
        "size": [int(drawn.heatmap.shape[1]), int(drawn.heatmap.shape[0])],
    }
    if crop is not None:
        render["crop_box"] = [round(v, 3) for v in crop]
    return Written(outputs, render, time.perf_counter() - start)
