"""Generated ``lrp explain`` run folders for the audit's tests and benchmark: a ``report.json``
written by the real :class:`lrpcli.run.report.ReportWriter` from real
:class:`lrpcli.run.entries.ImageEntry` objects, and one saved relevance map per image
(``NAME.relevance.npy``, float32 ``3 x size x size``) whose relevance is spread over the picture,
or, for the *marked* images, mostly in the top-left corner (a planted shortcut)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lrpcli.run.entries import ImageEntry, Prediction, Result, Target
from lrpcli.run.report import ReportWriter


def relevance(rng: np.random.Generator, size: int, marked: bool) -> np.ndarray:
    """A float32 ``(3, size, size)`` map: smooth positive and negative blobs over the picture, plus a
    strong positive blob in the top-left corner when ``marked``."""
    cells = 8
    coarse = rng.normal(0.2, 1.0, (cells, cells)).astype(np.float32)
    if marked:
        coarse[0, 0] += 25.0
    block = -(-size // cells)
    fine = np.kron(coarse, np.ones((block, block), dtype=np.float32))[:size, :size] / (block * block)
    return np.stack([fine * 0.3, fine * 0.5, fine * 0.2]).astype(np.float32)


def synthetic_run(
    folder: Path,
    classes: dict[str, int],
    *,
    marked: dict[str, float] | None = None,
    size: int = 64,
    seed: int = 0,
    save_npy: bool = True,
    failed: int = 0,
) -> dict[str, set[str]]:
    """Write a run into ``folder``: ``classes`` maps a label to its number of images, ``marked`` a label
    to the fraction of its images whose map has the corner shortcut; ``failed`` error entries are
    added at the end. Returns the input names of the marked images per label."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    total = sum(classes.values()) + failed
    run = {"model": {"source": "python", "name": "Synthetic"}, "options": {"save_npy": save_npy},
           "config": {"sha256": "0" * 64, "resolved": {"render": {"cmap": "bwr"}}}, "started_at": "2026-01-01T00:00:00+00:00"}
    planted: dict[str, set[str]] = {label: set() for label in classes}
    index = 0
    with ReportWriter(folder / "report.json", run, inputs=total, tolerance=1e-5) as writer:
        for class_index, (label, count) in enumerate(classes.items()):
            cut = round(count * (marked or {}).get(label, 0.0))
            for i in range(count):
                name = f"data/{label}/{i:05d}.png"
                rel = f"data/{label}/{i:05d}"
                outputs = {"heatmap": rel + ".heatmap.png", "overlay": rel + ".overlay.png"}
                if save_npy:
                    path = folder / (rel + ".relevance.npy")
                    path.parent.mkdir(parents=True, exist_ok=True)
                    np.save(path, relevance(rng, size, i < cut))
                    outputs["relevance"] = rel + ".relevance.npy"
                if i < cut:
                    planted[label].add(name)
                ledger = {"f_x": 2.0, "sum_pixels": 1.0, "pixel_share": 0.5, "relative_closure_error": 1e-8,
                          "absorbed": {"bias": 1.0, "stabilizer": 0.0, "dropped": 0.0}}
                result = Result(
                    image={"width": size, "height": size},
                    top_k=[Prediction(class_index, label, 0.9, 2.0)],
                    target=Target(class_index, label, "predicted", 0.9),
                    f_x=2.0,
                    relevance={"sum": 1.0, "positive": 1.5, "negative": -0.5},
                    conservation={"pixel_share": 0.5},
                    ledger=ledger,
                )
                entry = ImageEntry(index=index, input=name, rel=name, result=result, outputs=outputs,
                                   render={"cmap": "bwr", "crop_box": [0.0, 0.0, float(size), float(size)]})
                writer.add(entry)
                index += 1
        for i in range(failed):
            writer.add(ImageEntry(index=index, input=f"data/bad{i}.png", rel=f"data/bad{i}.png", status="error", error="not an image"))
            index += 1
        writer.write(exit_code=1 if failed else 0)
    return planted
