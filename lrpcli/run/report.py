"""``report.json``: streamed, atomically written run report (schema version :data:`SCHEMA_VERSION`).

Layout (documented in README.md, "Report")::

    {
      "schema_version": 1,
      "kind": "lrpcli.report",
      "run": {...},        # tool, model, composite, config digest, device, times
      "summary": {...},    # counts, failures, closure check against the tolerance
      "images": [ {...}, ... ]   # one entry per processed image, in input order
    }

Image entries are appended to an anonymous temporary file as they finish (so memory stays
flat however many images there are) and copied into the final file when the run ends; the
final file is written atomically, so a reader never sees a partial report.
"""

from __future__ import annotations

import io
import json
import math
import statistics
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from lrpcli.io.files import atomic_write
from lrpcli.run.entries import ImageEntry

__all__ = [
    "REPORT_KIND",
    "SCHEMA_VERSION",
    "ReportWriter",
    "dumps_entry",
    "json_safe",
    "jsonl_line",
    "pretty_json",
]

SCHEMA_VERSION = 1
"""Bumped when a field changes meaning or disappears (adding fields keeps the version)."""

REPORT_KIND = "lrpcli.report"

_INLINE_WIDTH = 100


def _text(value: str) -> str:
    """``value`` as valid Unicode: bytes a file name could not decode (lone surrogates from
    ``os.fsdecode``) are written as ``\\xNN`` instead of making the UTF-8 report unwritable."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return value


def json_safe(value: Any) -> Any:
    """Plain JSON data: non-finite floats become ``None``; NumPy/torch scalars and paths converted;
    text that is not valid Unicode (undecodable file names) escaped as ``\\xNN``."""
    kind = type(value)  # the plain types first: reports are mostly floats, strings and dicts
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is str:
        return _text(value)
    if kind is int or kind is bool or value is None:
        return value
    if kind is dict or isinstance(value, Mapping):
        return {_text(k if type(k) is str else str(k)): json_safe(v) for k, v in value.items()}
    if kind is list or isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, Path):
        return _text(value.as_posix())
    if hasattr(value, "tolist"):  # tensors, arrays
        return json_safe(value.tolist())
    return str(value)


_JSONL = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_COMPACT = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(", ", ": "))


def jsonl_line(entry: Mapping[str, Any]) -> str:
    """One image entry as a single compact JSON line (no trailing newline)."""
    return _JSONL.encode(json_safe(entry))


_PLAIN = frozenset((str, int, float, bool, type(None)))


def _scalar(value: Any) -> bool:
    return type(value) in _PLAIN or isinstance(value, (str, int, float))


def _compact(value: Any) -> str:
    return _COMPACT.encode(value)


def pretty_json(value: Any, level: int = 0) -> str:
    """JSON with 2-space indentation that keeps small things on one line.

    Lists and mappings of scalars that fit in about 100 characters, and mappings of scalars
    that are list items (ledger steps, top-k rows, layers) whatever their length, are written
    on one line each; everything else is expanded.
    """
    pad = "  " * (level + 1)
    end = "  " * level
    if isinstance(value, dict):
        if not value:
            return "{}"
        if level > 0 and all(_scalar(v) for v in value.values()):
            text = _compact(value)
            if len(text) <= _INLINE_WIDTH:
                return text
        items = [f"{pad}{json.dumps(str(k), ensure_ascii=False)}: {pretty_json(v, level + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + end + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        if all(_scalar(v) for v in value):
            text = _compact(value)
            if len(text) <= _INLINE_WIDTH:
                return text
        rows = []
        for v in value:
            if isinstance(v, dict) and all(
                _scalar(x) or (isinstance(x, list) and all(_scalar(y) for y in x)) for x in v.values()
            ):
                rows.append(pad + _compact(v))
            else:
                rows.append(pad + pretty_json(v, level + 1))
        return "[\n" + ",\n".join(rows) + "\n" + end + "]"
    return _compact(value)


def dumps_entry(entry: Mapping[str, Any], level: int = 0) -> str:
    """Pretty JSON for one image entry (see :func:`pretty_json`), indented for ``level``."""
    return "  " * level + pretty_json(json_safe(entry), level)


class ReportWriter:
    """Collects image entries (spooled to a temporary file) and writes ``report.json``.

    ``add`` keeps running totals for the summary; ``write`` produces the final file
    atomically and returns the summary.
    """

    def __init__(self, path: Path, run: Mapping[str, Any], *, inputs: int, tolerance: float) -> None:
        self.path = Path(path)
        self.run: dict[str, Any] = dict(run)
        self.inputs = inputs
        self.tolerance = float(tolerance)
        self._spool: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8")
        self._count = 0
        self.reused = 0
        self.ok = 0
        self.ok_reused = 0  # of ``ok``, entries taken from an earlier report
        self.failed = 0
        self.with_warnings = 0
        self.failures: list[dict[str, str]] = []
        self.max_rel_closure: float | None = None
        self.max_abs_closure: float | None = None
        self.worst_closure_input: str | None = None
        self.over_tolerance: list[str] = []
        self.max_rel_conservation: float | None = None
        self.pixel_shares: list[float] = []
        self.float64_redone = 0  # images recomputed in float64
        self.from_file = 0  # images explained for their --targets class
        self.from_file_predicted = 0  # ... whose predicted class is that class
        self.summary: dict[str, Any] = {}

    def add(self, entry: ImageEntry, *, reused: bool = False) -> None:
        """Append one image entry and update the totals; ``reused``: the entry comes from an
        earlier report (``--resume``)."""
        if self._count:
            self._spool.write(",\n")
        self._spool.write(dumps_entry(entry.to_dict(), level=2))
        self._count += 1
        self.reused += int(reused)
        if entry.warnings:
            self.with_warnings += 1
        if not entry.ok or entry.result is None:
            self.failed += 1
            self.failures.append({"input": entry.input, "error": str(entry.error)})
            return
        self.ok += 1
        self.ok_reused += int(reused)
        redo = entry.result.precision
        if redo:  # the float32 ledger did not close: recomputed in float64
            self.float64_redone += 1
        target, predicted = entry.result.target, entry.result.predicted
        if target.source == "targets file":  # --targets: how often the model predicts the given class
            self.from_file += 1
            self.from_file_predicted += int(predicted is not None and predicted.index == target.index)
        name = entry.input
        ledgers = [entry.result.ledger] + [m.get("ledger") or {} for m in entry.result.more or []]
        rels = [_finite(ledger.get("relative_closure_error")) for ledger in ledgers]
        if any(rel is None or rel > self.tolerance for rel in rels):  # every map's accounts must close
            self.over_tolerance.append(name)
        for ledger, rel in zip(ledgers, rels):  # --target topK: several maps
            absolute = _finite(ledger.get("closure_error"))
            if rel is not None and (self.max_rel_closure is None or rel > self.max_rel_closure):
                self.max_rel_closure = rel
                self.worst_closure_input = name
            if absolute is not None:
                absolute = abs(absolute)
                if self.max_abs_closure is None or absolute > self.max_abs_closure:
                    self.max_abs_closure = absolute
        share = _finite(entry.result.conservation.get("pixel_share"))
        if share is not None:
            self.pixel_shares.append(share)
        cons = _finite(entry.result.conservation.get("relative_error"))
        if cons is not None:
            cons = abs(cons)
            if self.max_rel_conservation is None or cons > self.max_rel_conservation:
                self.max_rel_conservation = cons

    @property
    def processed(self) -> int:
        return self._count

    def closure_check(self) -> str:
        """``pass`` if every explained image's ledger closes within the tolerance."""
        if self.ok == 0:
            return "n/a"
        return "fail" if self.over_tolerance else "pass"

    def write(
        self,
        *,
        interrupted: bool = False,
        stopped_early: bool = False,
        stdout_closed: bool = False,
        exit_code: int = 0,
        elapsed_s: float | None = None,
        run_updates: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write ``report.json`` atomically; return the summary."""
        if run_updates:
            self.run.update(run_updates)
        done = self.ok - self.ok_reused  # images this run explained (failures and reuse excluded)
        rate = done / elapsed_s if elapsed_s and elapsed_s > 0 else None
        self.summary = {
            "inputs": self.inputs,
            "processed": self._count,
            "reused": self.reused,
            "ok": self.ok,
            "failed": self.failed,
            "not_processed": max(self.inputs - self._count, 0),
            "interrupted": interrupted,
            "stopped_early": stopped_early,
            "stdout_closed": stdout_closed,
            "failures": self.failures,
            "images_with_warnings": self.with_warnings,
            "tolerance": self.tolerance,
            "max_relative_closure_error": self.max_rel_closure,
            "max_abs_closure_error": self.max_abs_closure,
            "worst_closure_input": self.worst_closure_input,
            "over_tolerance": self.over_tolerance,
            "closure_check": self.closure_check(),
            "float64_redone": self.float64_redone,
            "max_relative_conservation_error": self.max_rel_conservation,
            "pixel_share_median": statistics.median(self.pixel_shares) if self.pixel_shares else None,
            "pixel_share_min": min(self.pixel_shares) if self.pixel_shares else None,
            **(
                {"targets_file": {"explained": self.from_file, "predicted_is_target": self.from_file_predicted}}
                if self.from_file
                else {}
            ),
            "elapsed_s": elapsed_s,
            "images_per_second": rate,
            "exit_code": exit_code,
        }
        head = {
            "schema_version": SCHEMA_VERSION,
            "kind": REPORT_KIND,
            "run": json_safe(self.run),
            "summary": json_safe(self.summary),
        }
        head_text = pretty_json(head)
        assert head_text.endswith("\n}")
        opening = head_text[: -len("\n}")] + ',\n  "images": ['

        def fill(handle: IO[bytes]) -> None:
            handle.write(opening.encode("utf-8"))
            if self._count:
                handle.write(b"\n")
                self._spool.flush()
                self._spool.seek(0)
                while chunk := self._spool.read(1 << 16):
                    handle.write(chunk.encode("utf-8"))
                self._spool.seek(0, io.SEEK_END)
                handle.write(b"\n  ]\n}\n")
            else:
                handle.write(b"]\n}\n")

        atomic_write(self.path, fill)
        return self.summary

    def close(self) -> None:
        self._spool.close()

    def __enter__(self) -> ReportWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
