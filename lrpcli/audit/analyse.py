"""The audit of a run: stream its saved relevance maps, keep each one downsized with its "where"
shares, group them by explained class and run SpRAy on every class with enough images.

Memory is one full-size map at a time (per reading thread) plus ``size x size`` floats per image;
the maps are read by a small thread pool (NumPy releases the GIL while it reads and sums).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from lrpcli.audit.maps import (
    ExplainedImage,
    MapError,
    RunRecord,
    downsize,
    explained_image,
    load_map,
    normalise,
)
from lrpcli.audit.spray import DEFAULT_NEIGHBOURS, Spray, spray
from lrpcli.audit.where import Box, box_on_map, where

__all__ = ["MIN_IMAGES", "Audit", "AuditSettings", "ClassAudit", "ClusterAudit", "ImageAudit", "audit_run"]

MIN_IMAGES = 10
"""Fewer explained images of a class than this are not clustered (the class is listed, skipped)."""


@dataclass(frozen=True)
class AuditSettings:
    """How ``lrp audit`` clusters (see its ``--help``)."""

    size: int = 32
    neighbours: int = DEFAULT_NEIGHBOURS
    clusters: int | None = None
    max_clusters: int = 8
    min_images: int = MIN_IMAGES
    prototypes: int = 6
    border: float = 0.1
    seed: int = 0
    workers: int = 2
    boxes: dict[str, Box] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.min_images < 3:
            raise ValueError(f"min_images must be at least 3 (a graph of nearest neighbours), got {self.min_images}")
        if self.clusters is not None and self.clusters > self.min_images:
            raise ValueError(f"clusters ({self.clusters}) cannot exceed min_images ({self.min_images})")


@dataclass
class ImageAudit:
    """One explained image in the audit: its entry, where its positive relevance lies, its cluster and
    the distance of its normalised map to that cluster's mean map."""

    image: ExplainedImage
    where: dict[str, float | None]
    cluster: int | None = None
    distance: float | None = None


@dataclass
class ClusterAudit:
    """One cluster of a class: its members (indexes into :attr:`Audit.images`), prototypes (the
    members whose maps are closest to its mean map, closest first), mean normalised map and mean
    "where" shares."""

    index: int
    members: list[int]
    prototypes: list[int]
    mean_map: np.ndarray
    where: dict[str, float | None]


@dataclass
class ClassAudit:
    """One explained class: its images, their mean "where" shares, and SpRAy's result or why it was skipped."""

    index: int
    label: str
    members: list[int]
    where: dict[str, float | None] = field(default_factory=dict)
    spray: Spray | None = None
    clusters: list[ClusterAudit] = field(default_factory=list)
    skipped: str | None = None


@dataclass
class Audit:
    """The whole audit: every explained image with a readable map, the classes, what was left out."""

    images: list[ImageAudit]
    classes: list[ClassAudit]
    features: np.ndarray
    not_explained: int = 0
    no_relevance: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def _read(image: ExplainedImage, folder: Path, settings: AuditSettings) -> tuple[np.ndarray, dict[str, float | None]] | str:
    """One image's normalised downsized map and its "where" shares, or why its map cannot be read."""
    assert image.relevance is not None
    try:
        rmap = load_map(folder / image.relevance)
    except MapError as exc:
        return str(exc)
    box = settings.boxes.get(image.input) or settings.boxes.get(image.rel)
    on_map = box_on_map(box, image.crop_box, *rmap.shape) if box is not None else None
    shares = where(rmap, border=settings.border, box=on_map)
    return normalise(downsize(rmap, settings.size)), shares


def _chunks(items: Iterator[ExplainedImage], n: int) -> Iterator[list[ExplainedImage]]:
    while chunk := list(islice(items, n)):
        yield chunk


def audit_run(
    record: RunRecord,
    settings: AuditSettings,
    *,
    progress: Callable[[int], None] | None = None,
    on_class: Callable[[ClassAudit], None] | None = None,
) -> Audit:
    """Read ``record``'s maps (``progress`` gets the number read so far) and cluster each class
    (``on_class`` gets each class as it is done, largest first)."""
    total = int(record.summary.get("ok") or record.summary.get("processed") or 0)
    features = np.zeros((max(total, 16), settings.size * settings.size), dtype=np.float32)
    images: list[ImageAudit] = []
    audit = Audit(images=images, classes=[], features=features)

    def explained() -> Iterator[ExplainedImage]:
        for entry in record.entries():
            image = explained_image(entry)
            if image is None:
                audit.not_explained += 1
            elif image.relevance is None:
                audit.no_relevance += 1
            else:
                yield image

    with ThreadPoolExecutor(max_workers=max(1, settings.workers), thread_name_prefix="lrp-audit") as pool:
        for chunk in _chunks(explained(), 64):
            for image, read in zip(chunk, pool.map(lambda im: _read(im, record.folder, settings), chunk)):
                if isinstance(read, str):
                    audit.unreadable.append((image.input, read))
                    continue
                row, shares = read
                if len(images) == len(features):  # the summary undercounted: grow
                    features = audit.features = np.concatenate([features, np.zeros_like(features)])
                features[len(images)] = row
                images.append(ImageAudit(image, shares))
            if progress is not None:
                progress(len(images))
    audit.features = features[: len(images)]
    by_class: dict[int, list[int]] = {}
    for i, item in enumerate(images):
        by_class.setdefault(item.image.class_index, []).append(i)
    order = sorted(by_class, key=lambda c: (-len(by_class[c]), c))
    for c in order:
        members = by_class[c]
        done = _audit_class(audit, c, images[members[0]].image.label, members, settings)
        audit.classes.append(done)
        if on_class is not None:
            on_class(done)
    return audit


def _mean_where(rows: list[dict[str, float | None]]) -> dict[str, float | None]:
    """The mean of each share over the images that have it."""
    out: dict[str, float | None] = {}
    for key in rows[0] if rows else ():
        values = [r[key] for r in rows if r[key] is not None]
        out[key] = float(np.mean(values)) if values else None
    return out


def _audit_class(audit: Audit, index: int, label: str, members: list[int], settings: AuditSettings) -> ClassAudit:
    result = ClassAudit(index=index, label=label, members=members, where=_mean_where([audit.images[i].where for i in members]))
    if len(members) < settings.min_images:
        result.skipped = f"SpRAy needs at least {settings.min_images} images per class (--min-images) to tell strategies apart"
        return result
    found = spray(
        audit.features[members],
        neighbours=settings.neighbours,
        clusters=settings.clusters,
        max_clusters=settings.max_clusters,
        seed=settings.seed,
    )
    result.spray = found
    for c in range(found.clusters):
        chosen = [members[j] for j in np.flatnonzero(found.labels == c)]
        maps = audit.features[chosen]
        mean = maps.mean(axis=0)
        distance = np.linalg.norm(maps - mean, axis=1)  # to the cluster's mean map
        for i, d in zip(chosen, distance):
            audit.images[i].cluster, audit.images[i].distance = c, float(d)
        closest = np.argsort(distance, kind="stable")[: settings.prototypes]
        result.clusters.append(
            ClusterAudit(
                index=c,
                members=chosen,
                prototypes=[chosen[j] for j in closest],
                mean_map=mean.reshape(settings.size, settings.size),
                where=_mean_where([audit.images[i].where for i in chosen]),
            )
        )
    return result
