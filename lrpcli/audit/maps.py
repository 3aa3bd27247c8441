"""What an audit reads from an earlier ``lrp explain`` run: its ``report.json``, entry by entry, and
each explained image's saved relevance (``--save-npy``), one map at a time, downsized.

The report is parsed one image entry at a time (:func:`read_report`), so a report of 100,000
entries never becomes 100,000 Python dictionaries at once; each entry is read through
:meth:`lrpcli.run.entries.ImageEntry.from_dict` and only what the audit and the gallery need is
kept (:class:`ExplainedImage`). A relevance map (``3 x H x W`` float32, often 600 KB) is summed
over its channels and sum-pooled to ``size x size`` cells (:func:`downsize`); only that small map
is kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from lrpcli.run.entries import ImageEntry
from lrpcli.run.outputs import REPORT_NAME
from lrpcli.run.report import REPORT_KIND

__all__ = [
    "AuditError",
    "ExplainedImage",
    "MapError",
    "RunRecord",
    "as_number",
    "downsize",
    "explained_image",
    "load_map",
    "normalise",
    "pool_matrix",
    "read_report",
    "read_run",
]

_IMAGES_KEY = '\n  "images": ['  # where report.json's image list opens (its head is indented by 2)


class AuditError(Exception):
    """The run folder cannot be audited (a usage error: nothing was written)."""


class MapError(Exception):
    """One image's saved relevance cannot be read (the audit goes on without it)."""


@dataclass(frozen=True)
class ExplainedImage:
    """One explained image of the run, as the audit and the gallery need it.

    Paths in ``heatmap``, ``overlay`` and ``relevance`` are relative to the run folder;
    ``crop_box`` is where the model's input lies in the original image (its pixels).
    """

    index: int
    input: str
    rel: str
    class_index: int
    label: str
    probability: float | None
    predicted: str | None
    pixel_share: float | None
    closure: float | None
    warnings: tuple[str, ...]
    heatmap: str | None
    overlay: str | None
    relevance: str | None
    crop_box: tuple[float, float, float, float] | None


@dataclass
class RunRecord:
    """The report's head (``run`` and ``summary``) and where the report is."""

    folder: Path
    report: Path
    run: dict[str, Any]
    summary: dict[str, Any]

    def entries(self) -> Iterator[ImageEntry]:
        """Every image entry of the report, in order, parsed one at a time."""
        for raw in read_report(self.report)[1]:
            yield ImageEntry.from_dict(raw)


def read_report(path: Path) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    """``report.json``'s head (everything but ``images``) and an iterator over its image entries.

    Raises :class:`AuditError` when the file is missing, is not JSON or is not an lrpcli report.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AuditError(f"{path}: not found; give the --out folder of an lrp explain run") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"{path}: cannot read it ({exc})") from None
    at = text.find(_IMAGES_KEY)
    decoder = json.JSONDecoder()
    try:
        if at < 0:  # not written by ReportWriter's layout: parse it whole
            doc = json.loads(text)
            images = doc.pop("images", None) if isinstance(doc, dict) else None
            head, rest = doc, None
        else:
            head = json.loads(text[: at].rstrip().rstrip(",") + "\n}")
            images, rest = None, at + len(_IMAGES_KEY)
    except json.JSONDecodeError as exc:
        raise AuditError(f"{path}: not valid JSON ({exc}); was the run interrupted before it wrote its report?") from None
    if not isinstance(head, dict) or head.get("kind") != REPORT_KIND:
        raise AuditError(f"{path}: not an lrp explain report (its kind is not {REPORT_KIND!r})")

    def entries() -> Iterator[dict[str, Any]]:
        if rest is None:
            yield from (e for e in images or [] if isinstance(e, dict))
            return
        pos = rest
        while True:
            while pos < len(text) and text[pos] in " \n\r\t,":
                pos += 1
            if pos >= len(text) or text[pos] == "]":
                return
            try:
                entry, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                raise AuditError(f"{path}: an image entry is not valid JSON ({exc})") from None
            if isinstance(entry, dict):
                yield entry

    return head, entries()


def read_run(folder: Path) -> RunRecord:
    """The run in ``folder`` (an ``lrp explain --out`` folder with its ``report.json``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AuditError(f"{folder}: no such folder; give the --out folder of an lrp explain run")
    report = folder / REPORT_NAME
    head, _ = read_report(report)
    return RunRecord(folder, report, dict(head.get("run") or {}), dict(head.get("summary") or {}))


def as_number(value: Any) -> float | None:
    """``value`` as a float if it is a JSON number (not a bool), else None."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def explained_image(entry: ImageEntry) -> ExplainedImage | None:
    """What the audit needs of one report entry; None for an image that was not explained."""
    result = entry.result
    if not entry.ok or result is None:
        return None
    box = (entry.render or {}).get("crop_box")
    crop = tuple(float(v) for v in box) if isinstance(box, list) and len(box) == 4 else None
    top = result.top_k[0].label if result.top_k else None
    return ExplainedImage(
        index=entry.index,
        input=entry.input,
        rel=entry.rel,
        class_index=int(result.target.index),
        label=str(result.target.label),
        probability=as_number(result.target.probability),
        predicted=top,
        pixel_share=as_number(result.conservation.get("pixel_share")),
        closure=as_number(result.ledger.get("relative_closure_error")),
        warnings=tuple(entry.warnings),
        heatmap=entry.outputs.get("heatmap"),
        overlay=entry.outputs.get("overlay"),
        relevance=entry.outputs.get("relevance"),
        crop_box=crop,  # type: ignore[arg-type]
    )


def load_map(path: Path) -> np.ndarray:
    """A saved relevance (``(C, H, W)`` or ``(H, W)`` ``.npy``) summed over its channels: float32 ``(H, W)``.

    The file is memory-mapped, so only the summed map is held. Raises :class:`MapError`.
    """
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise MapError(f"{path}: missing") from None
    except (OSError, ValueError) as exc:
        raise MapError(f"{path}: not a NumPy array file ({exc})") from None
    if array.ndim == 3:
        summed = array.sum(axis=0, dtype=np.float32)
    elif array.ndim == 2:
        summed = np.array(array, dtype=np.float32)
    else:
        raise MapError(f"{path}: shape {tuple(array.shape)}, expected (C, H, W) or (H, W)")
    del array
    if summed.size == 0:
        raise MapError(f"{path}: empty map")
    return np.nan_to_num(summed, copy=False, nan=0.0, posinf=0.0, neginf=0.0)


@lru_cache(maxsize=16)
def pool_matrix(n: int, size: int) -> np.ndarray:
    """``(size, n)`` weights that sum-pool ``n`` pixels into ``size`` equal cells: entry ``(j, i)`` is
    the part of pixel ``i`` inside cell ``j`` (each column sums to 1, so the total is kept, whether
    ``n`` is a multiple of ``size``, larger or smaller)."""
    edges = np.arange(size + 1, dtype=np.float64) * (n / size)
    left = np.arange(n, dtype=np.float64)
    overlap = np.minimum(left[None, :] + 1.0, edges[1:, None]) - np.maximum(left[None, :], edges[:-1, None])
    weights = np.clip(overlap, 0.0, None).astype(np.float32)
    weights.flags.writeable = False
    return weights


@lru_cache(maxsize=16)
def _pool_columns(n: int, size: int) -> np.ndarray:
    """``pool_matrix(n, size).T``, contiguous (a transposed view makes the product 7x slower)."""
    weights = np.ascontiguousarray(pool_matrix(n, size).T)
    weights.flags.writeable = False
    return weights


def downsize(rmap: np.ndarray, size: int) -> np.ndarray:
    """``rmap`` sum-pooled to ``size x size`` cells (float32); the sum of the map is kept."""
    height, width = rmap.shape
    return pool_matrix(height, size) @ np.asarray(rmap, dtype=np.float32) @ _pool_columns(width, size)


def normalise(pooled: np.ndarray) -> np.ndarray:
    """A downsized map divided by its total |R| (float32, flattened), so that maps compare by where
    their relevance lies, not by how much there is; an all-zero map stays zero."""
    flat = np.asarray(pooled, dtype=np.float32).ravel()
    total = float(np.abs(flat).sum(dtype=np.float64))
    return flat / np.float32(total) if total > 0.0 else flat.copy()
