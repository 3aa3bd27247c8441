"""What each image's maps explain (:class:`TargetPlan`): the predicted class, a class the user
names, the top K classes (one map each, from one forward pass), a class per image read from a
targets file (``--targets``), and a class to contrast with (``--contrast``).

A contrast explains the logit difference ``f_A − f_B`` ("why A rather than B"): the reverse walk
starts from ``+f_A`` at A and ``−f_B`` at B, so with lrpcli's rules (all linear in the relevance)
the map is exactly A's map minus B's. This is the plain difference of logits, not Gu et al.'s
(2018) contrastive LRP, which clips the difference to its positive part and builds the "dual"
from all other classes.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["Pick", "TargetPlan", "TargetsFileError", "class_index", "match_targets", "read_targets"]


@dataclass(frozen=True)
class Pick:
    """One class per image: ``rank`` (1 = the predicted class, 2 = the runner-up, ...), a fixed
    ``class`` index, or the image's class in the targets ``file``."""

    kind: str  # "rank" | "class" | "file"
    value: int = 1

    def source(self) -> str:
        """The report's ``target.source``."""
        if self.kind == "rank":
            return "predicted" if self.value == 1 else f"rank {self.value}"
        return "requested" if self.kind == "class" else "targets file"

    def describe(self) -> str:
        """The pick in ``run.targets``: its source, a fixed class by its index."""
        return f"class {self.value}" if self.kind == "class" else self.source()


@dataclass(frozen=True)
class TargetPlan:
    """The maps of every image: one per pick (``--target top3``: ranks 1, 2, 3), each optionally
    contrasted with ``contrast``; ``by_input`` holds the targets file's class per input path."""

    picks: tuple[Pick, ...] = (Pick("rank", 1),)
    contrast: Pick | None = None
    by_input: Mapping[str, int] = field(default_factory=dict)
    file: str | None = None  # the targets file, for the report

    @property
    def maps(self) -> int:
        """Maps per image."""
        return len(self.picks)

    def columns(self, logits: Tensor, keys: Sequence[str]) -> Tensor:
        """``(N, maps)`` class indices for images ``keys`` (input paths) with these ``logits``."""
        return torch.stack([self._column(p, logits, keys) for p in self.picks], dim=1)

    def contrast_column(self, logits: Tensor, keys: Sequence[str]) -> Tensor | None:
        """``(N,)`` contrast classes, or None."""
        return None if self.contrast is None else self._column(self.contrast, logits, keys)

    def _column(self, pick: Pick, logits: Tensor, keys: Sequence[str]) -> Tensor:
        n, c = logits.shape
        if pick.kind == "rank":
            if pick.value > c:
                raise ValueError(f"rank {pick.value} asked of a model with {c} classes")
            return logits.topk(pick.value, dim=1).indices[:, pick.value - 1]
        if pick.kind == "class":
            return torch.full((n,), pick.value, dtype=torch.long, device=logits.device)
        return torch.tensor([self.by_input[k] for k in keys], dtype=torch.long, device=logits.device)

    def to_dict(self) -> dict[str, Any]:
        """``run.targets`` in the report."""
        return {
            "maps": [p.describe() for p in self.picks],
            "contrast": None if self.contrast is None else self.contrast.describe(),
            "definition": None if self.contrast is None else "f_target - f_contrast (plain logit difference)",
            "file": self.file,
            "from_file": len(self.by_input) if self.file else None,
        }


def class_index(value: str, categories: Sequence[str], what: str) -> int:
    """A class index from ``value``: an index in range, or a class name (exact, else
    case-insensitive; unambiguous). ``ValueError`` names ``what`` and says what to give instead."""
    text = value.strip()
    n = len(categories)
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < n:
            raise ValueError(f"{what} {text}: class index out of range 0..{n - 1}")
        return index
    matches = [i for i, name in enumerate(categories) if name == text]
    if not matches:
        folded = text.casefold()
        matches = [i for i, name in enumerate(categories) if name.casefold() == folded]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ValueError(f"{what} {text!r} names several classes ({', '.join(map(str, matches))}); give the index")
    close = difflib.get_close_matches(text, list(categories), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"{what} {text!r}: no class with that name{hint} (give a class index 0..{n - 1} or an exact class name)")


class TargetsFileError(ValueError):
    """The targets file cannot be read or names unknown classes (a usage error)."""


_PATH_KEYS = ("path", "image", "file", "filename")
_CLASS_KEYS = ("target", "class", "label", "class_index", "index")


def read_targets(path: Path, categories: Sequence[str]) -> list[tuple[str, int, int]]:
    """``(path text, class index, line)`` per row of a CSV/TSV or JSONL targets file.

    JSONL (``.jsonl``/``.ndjson``, or a first character ``{``): one object per line with a path
    (``path``/``image``/``file``) and a class (``target``/``class``/``label``: index or name).
    CSV: ``path,class`` per row (comma, tab or semicolon), an optional header row first.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetsFileError(f"--targets {path}: cannot read it ({exc})") from None
    rows: list[tuple[str, int, int]] = []
    jsonl = path.suffix.lower() in (".jsonl", ".ndjson") or text.lstrip().startswith("{")
    for line, image, label in (_jsonl_rows(path, text) if jsonl else _csv_rows(path, text, categories)):
        if isinstance(label, bool) or not isinstance(label, (int, str)):
            raise TargetsFileError(f"--targets {path}:{line}: the class must be an index or a name, got {label!r}")
        try:
            index = class_index(str(label), categories, "class")
        except ValueError as exc:
            raise TargetsFileError(f"--targets {path}:{line}: {exc}") from None
        rows.append((image, index, line))
    if not rows:
        raise TargetsFileError(f"--targets {path}: no rows; write one 'path,class' per line (or JSON lines)")
    return rows


def _jsonl_rows(path: Path, text: str) -> list[tuple[int, str, Any]]:
    out = []
    for line, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            raise TargetsFileError(f"--targets {path}:{line}: not JSON ({exc})") from None
        image = next((obj[k] for k in _PATH_KEYS if isinstance(obj, dict) and k in obj), None)
        label = next((obj[k] for k in _CLASS_KEYS if isinstance(obj, dict) and k in obj), None)
        if not isinstance(image, str) or label is None:
            raise TargetsFileError(
                f"--targets {path}:{line}: expected an object with \"path\" and \"target\" "
                f"(e.g. {{\"path\": \"cat.jpg\", \"target\": 281}}), got {raw.strip()[:80]}"
            )
        out.append((line, image, label))
    return out


def _csv_rows(path: Path, text: str, categories: Sequence[str]) -> list[tuple[int, str, Any]]:
    try:
        dialect: Any = csv.Sniffer().sniff(text[:4096], delimiters=",\t;")
    except csv.Error:
        dialect = csv.excel
    out = []
    for line, row in enumerate(csv.reader(io.StringIO(text), dialect), 1):
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        if len(cells) < 2 or not cells[0]:
            raise TargetsFileError(f"--targets {path}:{line}: expected 'path,class', got {','.join(row)[:80]!r}")
        if not out and cells[0].lower() in _PATH_KEYS and cells[1].lower() in _CLASS_KEYS:
            continue  # the header
        out.append((line, cells[0], cells[1]))
    return out


def match_targets(rows: Sequence[tuple[str, int, int]], file: Path, inputs: Sequence[Any]) -> tuple[dict[str, int], list[Any]]:
    """The class of each input (``ImageInput``), keyed by ``input.path.as_posix()``, and the
    inputs the file has no row for. A row's path matches an input as the same file (relative to
    the targets file's folder, or to the current folder), as the input's path below the folder
    given on the command line, or by file name when only one row has that name."""
    by_real: dict[str, int] = {}
    by_text: dict[str, int] = {}
    by_name: dict[str, list[int]] = {}
    for image, index, _ in rows:
        for base in (file.parent, Path.cwd()):
            by_real.setdefault(os.path.realpath(base / image), index)
        by_text.setdefault(Path(image).as_posix(), index)
        by_name.setdefault(Path(image).name, []).append(index)
    unique_names = {name: hits[0] for name, hits in by_name.items() if len(hits) == 1}
    found: dict[str, int] = {}
    missing: list[Any] = []
    for item in inputs:
        key = item.path.as_posix()
        for hit in (
            by_real.get(os.path.realpath(item.path)),
            by_text.get(item.rel.as_posix()),
            by_text.get(key),
            unique_names.get(item.path.name),
        ):
            if hit is not None:
                found[key] = hit
                break
        else:
            missing.append(item)
    return found, missing
