"""What ``lrp audit`` writes: ``audit.json`` (schema version :data:`AUDIT_SCHEMA_VERSION`), one JSON
line per cluster (``--jsonl``), and the pictures: each cluster's mean heatmap and, per clustered
class, one picture of its clusters (mean map and prototypes, one row per cluster).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lrpcli import __version__
from lrpcli.audit.analyse import Audit, AuditSettings, ClassAudit, ClusterAudit
from lrpcli.audit.maps import RunRecord
from lrpcli.audit.where import REGIONS
from lrpcli.io.canvas import grid
from lrpcli.io.files import write_png
from lrpcli.io.render import heatmap_rgb, symmetric_scale
from lrpcli.run.entries import percent

__all__ = [
    "AUDIT_KIND",
    "AUDIT_NAME",
    "AUDIT_SCHEMA_VERSION",
    "MAPS_DIR",
    "audit_document",
    "class_picture_path",
    "cluster_lines",
    "cluster_map_path",
    "run_cmap",
    "where_words",
    "write_pictures",
]

AUDIT_SCHEMA_VERSION = 1
"""Bumped when a field of ``audit.json`` changes meaning or disappears (new fields keep it)."""
AUDIT_KIND = "lrpcli.audit"
AUDIT_NAME = "audit.json"
MAPS_DIR = "maps"
_MAP_PIXELS = 160  # a mean map is drawn this large (nearest neighbour: its cells stay visible)
_ROW_PROTOTYPES = 4  # prototypes shown beside each mean map in a class's picture


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", label).strip("_")[:40] or "class"


def cluster_map_path(c: ClassAudit, cluster: ClusterAudit) -> str:
    """Where a cluster's mean heatmap goes, relative to the audit folder."""
    return f"{MAPS_DIR}/{c.index}-{_slug(c.label)}.cluster{cluster.index}.png"


def class_picture_path(c: ClassAudit) -> str:
    """Where a clustered class's picture (mean maps and prototypes) goes, relative to the audit folder."""
    return f"{MAPS_DIR}/{c.index}-{_slug(c.label)}.clusters.png"


def run_cmap(record: RunRecord) -> str:
    """The colour map the run drew its heatmaps with (``bwr`` if the report does not say)."""
    render = ((record.run.get("config") or {}).get("resolved") or {}).get("render") or {}
    cmap = render.get("cmap")
    return cmap if isinstance(cmap, str) else "bwr"


def where_words(shares: dict[str, float | None]) -> str:
    """``border 71 %, top-left 64 %``: the border share and the quadrant with the most relevance."""
    border = shares.get("border")
    if border is None:
        return "no positive relevance"
    quadrants = {k: shares.get(k) for k in ("top_left", "top_right", "bottom_left", "bottom_right")}
    name, top = max(((k, v) for k, v in quadrants.items() if v is not None), key=lambda kv: kv[1])
    words = f"border {percent(border)}, {name.replace('_', '-')} {percent(top)}"
    outside = shares.get("outside_box")
    return words + (f", outside box {percent(outside)}" if outside is not None else "")


def _mean_map_rgb(mean_map: np.ndarray, cmap: str) -> np.ndarray:
    rgb = heatmap_rgb(mean_map, cmap=cmap, scale=symmetric_scale(mean_map))
    factor = max(1, _MAP_PIXELS // max(mean_map.shape))
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)


def _thumbnail(path: Path, height: int) -> np.ndarray | None:
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            width = max(1, round(im.width * height / im.height))
            return np.asarray(im.resize((width, height), Image.Resampling.BILINEAR))
    except (OSError, ValueError):
        return None


def write_pictures(audit: Audit, record: RunRecord, out: Path) -> None:
    """Each cluster's mean heatmap, and per clustered class one picture: a row per cluster with its
    mean map and its first prototypes' overlays (from the run's outputs)."""
    cmap = run_cmap(record)
    for c in audit.classes:
        rows = []
        for cluster in c.clusters:
            drawn = _mean_map_rgb(cluster.mean_map, cmap)
            write_png(out / cluster_map_path(c, cluster), drawn)
            share = len(cluster.members) / len(c.members)
            tiles = [(drawn, f"cluster {cluster.index}: {len(cluster.members)} images ({percent(share)})\n{where_words(cluster.where)}")]
            for rank, i in enumerate(cluster.prototypes[:_ROW_PROTOTYPES], 1):
                image = audit.images[i].image
                shown = _thumbnail(record.folder / image.overlay, drawn.shape[0]) if image.overlay else None
                if shown is not None:
                    tiles.append((shown, f"prototype {rank}\n{Path(image.input).name}"))
            rows.append(grid(tiles, height=drawn.shape[0]))
        if rows:
            width = max(r.shape[1] for r in rows)
            padded = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
            write_png(out / class_picture_path(c), np.concatenate(padded, axis=0))


def _image_ref(audit: Audit, i: int) -> dict[str, Any]:
    item = audit.images[i]
    return {
        "input": item.image.input,
        "overlay": item.image.overlay,
        "distance": item.distance,
    }


def _cluster_record(audit: Audit, c: ClassAudit, cluster: ClusterAudit) -> dict[str, Any]:
    return {
        "cluster": cluster.index,
        "size": len(cluster.members),
        "share": len(cluster.members) / len(c.members),
        "where": {k: cluster.where.get(k) for k in REGIONS},
        "mean_map": cluster_map_path(c, cluster),
        "prototypes": [_image_ref(audit, i) for i in cluster.prototypes],
        "members": [audit.images[i].image.input for i in cluster.members],
    }


def cluster_lines(audit: Audit) -> list[dict[str, Any]]:
    """One object per cluster (``--jsonl``): its class, the class's size and suggested number of
    strategies, then the cluster's record as in ``audit.json``."""
    lines = []
    for c in audit.classes:
        if c.spray is None:
            continue
        for cluster in c.clusters:
            lines.append(
                {
                    "class": {"index": c.index, "label": c.label},
                    "class_images": len(c.members),
                    "suggested_clusters": c.spray.suggested,
                    **_cluster_record(audit, c, cluster),
                }
            )
    return lines


def _class_record(audit: Audit, c: ClassAudit) -> dict[str, Any]:
    head: dict[str, Any] = {
        "index": c.index,
        "label": c.label,
        "images": len(c.members),
        "where": {k: c.where.get(k) for k in REGIONS},
    }
    if c.spray is None:
        return {**head, "status": "skipped", "reason": c.skipped}
    values = c.spray.eigenvalues
    return {
        **head,
        "status": "clustered",
        "reason": None,
        "neighbours": c.spray.neighbours,
        "eigenvalues": [float(v) for v in values],
        "eigengap": {"suggested": c.spray.suggested, "gaps": [float(g) for g in np.diff(values)]},
        "clusters_used": c.spray.clusters,
        "picture": class_picture_path(c),
        "clusters": [_cluster_record(audit, c, cluster) for cluster in c.clusters],
    }


def audit_document(
    audit: Audit,
    record: RunRecord,
    settings: AuditSettings,
    *,
    started_at: str,
    finished_at: str,
    duration_s: float,
    boxes: str | None = None,
) -> dict[str, Any]:
    """``audit.json``: the run audited, the settings, a summary, one record per class (largest
    first) and one per image (in the report's order)."""
    run = record.run
    model = run.get("model") or {}
    clustered = [c for c in audit.classes if c.spray is not None]
    return {
        "schema_version": AUDIT_SCHEMA_VERSION,
        "kind": AUDIT_KIND,
        "run": {
            "lrpcli_version": __version__,
            "started_at": started_at,
            "finished_at": finished_at,
            "duration_s": duration_s,
            "explain_run": record.folder.as_posix(),
            "explain_started_at": run.get("started_at"),
            "model": {"source": model.get("source"), "name": model.get("name")},
            "config_sha256": (run.get("config") or {}).get("sha256"),
        },
        "settings": {
            "size": settings.size,
            "neighbours": settings.neighbours,
            "clusters": settings.clusters,
            "max_clusters": settings.max_clusters,
            "min_images": settings.min_images,
            "prototypes": settings.prototypes,
            "border": settings.border,
            "seed": settings.seed,
            "boxes": boxes,
        },
        "summary": {
            "images": len(audit.images),
            "not_explained": audit.not_explained,
            "no_relevance": audit.no_relevance,
            "unreadable": [{"input": name, "error": why} for name, why in audit.unreadable],
            "classes": len(audit.classes),
            "clustered_classes": len(clustered),
            "skipped_classes": len(audit.classes) - len(clustered),
            "clusters": sum(len(c.clusters) for c in clustered),
        },
        "classes": [_class_record(audit, c) for c in audit.classes],
        "images": [
            {
                "input": item.image.input,
                "class": item.image.class_index,
                "cluster": item.cluster,
                "distance": item.distance,
                "where": item.where,
            }
            for item in audit.images
        ],
    }
