"""Where each input's outputs go, and the checks that writing them is safe.

Outputs mirror the input tree under ``--out``: ``REL-without-extension`` plus
:data:`HEATMAP_SUFFIX`, :data:`OVERLAY_SUFFIX`, (``--composites``) :data:`COMPARE_SUFFIX` and
(``--save-npy``) :data:`RELEVANCE_SUFFIX`, and (``--layer NAME``) ``.layer-NAME.npy``; the second and
further maps of ``--target topK`` add ``.top2``, ``.top3``, ... before those suffixes. Inputs whose relative paths would collide
(``a/img.png`` and ``b/img.png`` given as files) were made unique by
:func:`lrpcli.io.inputs.discover` (``img``, ``img-2``, ...).
They must stay inside the output folder, never replace an input, and (without
``--overwrite``) not exist yet.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from lrpcli.io.inputs import ImageInput

__all__ = [
    "COMPARE_SUFFIX",
    "HEATMAP_SUFFIX",
    "JOURNAL_NAME",
    "LAYER_KEY",
    "OVERLAY_SUFFIX",
    "RELEVANCE_SUFFIX",
    "REPORT_NAME",
    "OutputConflict",
    "OutputPaths",
    "drop_previous_outputs",
    "output_paths",
    "plan_outputs",
]

HEATMAP_SUFFIX = ".heatmap.png"
OVERLAY_SUFFIX = ".overlay.png"
RELEVANCE_SUFFIX = ".relevance.npy"
COMPARE_SUFFIX = ".compare.png"
REPORT_NAME = "report.json"
JOURNAL_NAME = "journal.jsonl"
"""One JSON line per finished image while a run is going (:mod:`lrpcli.run.journal`)."""


class OutputConflict(Exception):
    """The planned outputs are unsafe or already exist (a usage error: nothing was written)."""


@dataclass(frozen=True)
class OutputPaths:
    """Where one input's outputs go: its (first) map's files, the relevance at each ``--layer``
    (``layers``: name → ``.npy``), and the files of its further maps (``more``: ``--target topK``)."""

    heatmap: Path
    overlay: Path
    relevance: Path | None = None
    compare: Path | None = None
    layers: dict[str, Path] = field(default_factory=dict)
    more: tuple[OutputPaths, ...] = ()

    def all(self) -> list[Path]:
        """Every file, the further maps' too."""
        own = [p for p in (self.heatmap, self.overlay, self.relevance, self.compare) if p is not None]
        return own + list(self.layers.values()) + [p for m in self.more for p in m.all()]

    def named(self) -> dict[str, Path]:
        """This map's files by the report's ``outputs`` keys, in the report's order (the further
        maps' files are in ``more``)."""
        names = {"heatmap": self.heatmap, "overlay": self.overlay}
        if self.compare is not None:
            names["compare"] = self.compare
        if self.relevance is not None:
            names["relevance"] = self.relevance
        names.update({f"{LAYER_KEY}{name}": path for name, path in self.layers.items()})
        return names


LAYER_KEY = "layer:"
"""``outputs`` key prefix of a ``--layer`` file: ``layer:NAME``."""


def output_paths(
    out_dir: Path,
    rel: Path,
    *,
    save_npy: bool = False,
    compare: bool = False,
    layers: Sequence[str] = (),
    maps: int = 1,
) -> OutputPaths:
    """``OUT/REL-without-extension`` + ``.heatmap.png`` / ``.overlay.png`` / ``.relevance.npy`` /
    ``.compare.png`` / ``.layer-NAME.npy``; map ``k ≥ 2`` of ``maps`` adds ``.topK`` before them."""
    stem = Path(out_dir) / rel.parent / (rel.stem if rel.suffix else rel.name)

    def at(name: str, compare: bool) -> OutputPaths:
        return OutputPaths(
            heatmap=stem.with_name(name + HEATMAP_SUFFIX),
            overlay=stem.with_name(name + OVERLAY_SUFFIX),
            relevance=stem.with_name(name + RELEVANCE_SUFFIX) if save_npy else None,
            compare=stem.with_name(name + COMPARE_SUFFIX) if compare else None,
            layers={layer: stem.with_name(f"{name}.layer-{layer}.npy") for layer in layers},
        )

    first = at(stem.name, compare)
    more = tuple(at(f"{stem.name}.top{k}", False) for k in range(2, maps + 1))
    return replace(first, more=more) if more else first


def _real(path: Path) -> str:
    return os.path.normcase(os.path.realpath(path))


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def drop_previous_outputs(
    inputs: Sequence[ImageInput],
    out_dir: Path,
    *,
    keep: Sequence[str | Path] = (),
    ours: Callable[[Path], bool] | None = None,
) -> tuple[list[ImageInput], list[ImageInput]]:
    """Split off inputs that are earlier results of this tool.

    Those are the files ``ours`` recognises (our PNGs carry a text chunk naming lrpcli), wherever
    they are, and files named like our outputs inside ``out_dir`` (made before the mark).
    Scanning a folder with earlier runs in it would otherwise explain old heatmaps. Files named
    in ``keep`` (given explicitly on the command line) are never dropped. Returns ``(kept, dropped)``.
    """
    out_real = _real(out_dir)
    explicit = {_real(Path(p)) for p in keep}
    kept: list[ImageInput] = []
    dropped: list[ImageInput] = []
    for item in inputs:
        name = item.path.name.lower()
        real = _real(item.path)
        if real not in explicit and (
            (_inside(real, out_real) and name.endswith((HEATMAP_SUFFIX, OVERLAY_SUFFIX, COMPARE_SUFFIX)))
            or (ours is not None and ours(item.path))
        ):
            dropped.append(item)
        else:
            kept.append(item)
    return kept, dropped


def plan_outputs(
    inputs: Sequence[ImageInput],
    out_dir: Path,
    *,
    save_npy: bool = False,
    compare: bool = False,
    overwrite: bool = False,
    layers: Sequence[str] = (),
    maps: int = 1,
) -> list[OutputPaths]:
    """Output paths for every input, after checking that writing them is safe.

    Raises :class:`OutputConflict` when the output folder is not a folder, an output would
    resolve outside it (through a symbolic link), would replace an input file, or (without
    ``overwrite``) already exists, naming the first such path. Nothing is written.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputConflict(f"--out {out_dir}: exists and is not a folder")
    out_real = _real(out_dir)
    input_reals = {_real(item.path) for item in inputs}
    report = out_dir / REPORT_NAME
    journal = out_dir / JOURNAL_NAME
    plans = [
        output_paths(out_dir, item.rel, save_npy=save_npy, compare=compare, layers=layers, maps=maps)
        for item in inputs
    ]
    seen: dict[str, Path] = {}
    checked_parents: dict[Path, str] = {}
    for path in [p for plan in plans for p in plan.all()] + [report, journal]:
        parent = path.parent
        parent_real = checked_parents.get(parent)
        if parent_real is None:
            parent_real = _real(parent)
            checked_parents[parent] = parent_real
        real = os.path.join(parent_real, os.path.normcase(path.name))
        if not _inside(real, out_real) or (os.path.islink(path) and not _inside(_real(path), out_real)):
            raise OutputConflict(
                f"refusing to write {path}: it resolves to {real}, outside the output folder "
                f"{out_dir} (a symbolic link?); choose another --out"
            )
        if real in input_reals or _real(path) in input_reals:
            raise OutputConflict(
                f"refusing to write {path}: it is one of the input images; "
                "choose another --out (--overwrite never replaces inputs)"
            )
        if real in seen:
            raise OutputConflict(f"two outputs would be written to {path}; rename one of the inputs")
        seen[real] = path
        if not overwrite and os.path.lexists(path):
            raise OutputConflict(
                f"{path} already exists; pass --resume to finish an earlier run (an interrupted one) "
                "with the same command, --overwrite to replace its outputs, or choose another --out"
            )
    return plans
