"""Where an image's positive relevance lies: its share in the border, in each quadrant, and outside
the object's bounding box when one is given.

Shares are of the positive relevance ``max(R, 0)`` at the model's input (the map ``--save-npy``
kept); a map with no positive relevance has no shares (``None``). Bounding boxes are read from a
CSV or JSON file in the original image's pixels and mapped onto the model's input with the crop
the run reports (``render.crop_box``).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["REGIONS", "Box", "BoxError", "box_on_map", "read_boxes", "where"]

REGIONS: tuple[str, ...] = ("border", "top_left", "top_right", "bottom_left", "bottom_right", "outside_box")
"""The shares :func:`where` reports, in order."""

Box = tuple[float, float, float, float]


class BoxError(Exception):
    """The bounding-box file cannot be read (a usage error)."""


def where(rmap: np.ndarray, *, border: float = 0.1, box: Box | None = None) -> dict[str, float | None]:
    """Shares of ``rmap``'s positive relevance: in the outer ``border`` of each side (a fraction of
    the side, at least one pixel), in each quadrant, and outside ``box`` (``x0, y0, x1, y1`` in map
    pixels; ``None`` without a box). All ``None`` when the map has no positive relevance."""
    if not 0.0 < border < 0.5:
        raise ValueError(f"border must be between 0 and 0.5 (a fraction of the side), got {border}")
    positive = np.maximum(np.asarray(rmap, dtype=np.float32), 0.0)
    total = float(positive.sum(dtype=np.float64))
    if not math.isfinite(total) or total <= 0.0:
        return dict.fromkeys(REGIONS)
    height, width = positive.shape
    bh, bw = max(1, round(height * border)), max(1, round(width * border))
    inner = float(positive[bh : height - bh, bw : width - bw].sum(dtype=np.float64))
    top_rows = positive[: height // 2]
    bottom_rows = positive[height // 2 :]
    half = width // 2
    shares: dict[str, float | None] = {
        "border": 1.0 - inner / total,
        "top_left": float(top_rows[:, :half].sum(dtype=np.float64)) / total,
        "top_right": float(top_rows[:, half:].sum(dtype=np.float64)) / total,
        "bottom_left": float(bottom_rows[:, :half].sum(dtype=np.float64)) / total,
        "bottom_right": float(bottom_rows[:, half:].sum(dtype=np.float64)) / total,
        "outside_box": None,
    }
    if box is not None:
        x0, y0, x1, y1 = box
        c0, c1 = max(0, math.floor(x0)), min(width, math.ceil(x1))
        r0, r1 = max(0, math.floor(y0)), min(height, math.ceil(y1))
        inside = float(positive[r0:r1, c0:c1].sum(dtype=np.float64)) if r1 > r0 and c1 > c0 else 0.0
        shares["outside_box"] = 1.0 - inside / total
    return shares


def box_on_map(box: Box, crop_box: Box | None, height: int, width: int) -> Box:
    """``box`` (original image pixels) in the pixels of a ``height x width`` map of the model's input,
    which shows ``crop_box`` of the original (the whole image when ``crop_box`` is None)."""
    if crop_box is None:
        return box
    left, top, right, bottom = crop_box
    sx = width / (right - left) if right > left else 1.0
    sy = height / (bottom - top) if bottom > top else 1.0
    x0, y0, x1, y1 = box
    return ((x0 - left) * sx, (y0 - top) * sy, (x1 - left) * sx, (y1 - top) * sy)


def _box(values: list[Any], where_: str) -> Box:
    try:
        x0, y0, x1, y1 = (float(v) for v in values)
    except (TypeError, ValueError):
        raise BoxError(f"{where_}: a box is four numbers x0, y0, x1, y1 (pixels), got {values!r}") from None
    if not (x1 > x0 and y1 > y0) or not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise BoxError(f"{where_}: the box {values!r} is empty; give x0 < x1 and y0 < y1 in the image's pixels")
    return (x0, y0, x1, y1)


def read_boxes(path: Path) -> dict[str, Box]:
    """Bounding boxes by image: a JSON object ``{"path": [x0, y0, x1, y1], ...}`` (``.json``) or CSV
    rows ``path,x0,y0,x1,y1`` (a header row is allowed). A path is matched against the run's input
    path or its mirrored path (``rel``). Raises :class:`BoxError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BoxError(f"--boxes {path}: cannot read it ({exc})") from None
    boxes: dict[str, Box] = {}
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BoxError(f"--boxes {path}: not valid JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise BoxError(f'--boxes {path}: expected an object {{"image path": [x0, y0, x1, y1], ...}}')
        for key, value in doc.items():
            boxes[str(key)] = _box(value if isinstance(value, list) else [value], f"--boxes {path}: {key}")
        return boxes
    for number, row in enumerate(csv.reader(text.splitlines()), 1):
        if not row or row[0].startswith("#"):
            continue
        if number == 1 and row[1:2] and not _numeric(row[1]):
            continue  # a header
        if len(row) != 5:
            raise BoxError(f"--boxes {path}:{number}: expected path,x0,y0,x1,y1, got {len(row)} fields")
        boxes[row[0]] = _box(row[1:], f"--boxes {path}:{number}")
    return boxes


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
