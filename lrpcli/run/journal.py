"""The journal: one JSON line per finished image, so a killed run loses nothing it finished.

``OUT/journal.jsonl`` opens with a header line (``kind``, ``schema_version``, the ``run`` record
and the number of inputs), then gets one image entry per line, appended and flushed after that
image's files were renamed into place. ``report.json`` is written from the same entries when the
run ends, after which the journal is removed. A process killed with SIGKILL leaves the journal
behind; its last line may be torn (no newline, or not JSON), and readers ignore it.
:func:`read_finished` gives what an output folder holds (report, journal, or both: the journal of
a resumed run that was killed again), for ``--resume`` and ``lrp merge``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from lrpcli.run.outputs import JOURNAL_NAME, REPORT_NAME
from lrpcli.run.report import REPORT_KIND, SCHEMA_VERSION, jsonl_line

__all__ = ["JOURNAL_KIND", "FinishedRun", "Journal", "JournalError", "entry_key", "read_finished", "read_journal"]

JOURNAL_KIND = "lrpcli.journal"


class JournalError(Exception):
    """A report or journal in the output folder cannot be read (the message says which and why)."""


class Journal:
    """An open journal: :meth:`append` one entry per finished image, :meth:`remove` at the end."""

    def __init__(self, path: Path, handle: IO[bytes]) -> None:
        self.path = path
        self._handle = handle

    @classmethod
    def open(cls, out_dir: Path, run: dict[str, Any], inputs: int, *, resume: bool = False) -> Journal:
        """Start ``OUT/journal.jsonl`` with a header line, or (``resume``) append to the one there,
        first cutting off a torn last line."""
        path = Path(out_dir) / JOURNAL_NAME
        if resume and path.is_file() and path.stat().st_size:
            handle = open(path, "r+b")
            handle.truncate(_complete_length(handle.read()))
            handle.seek(0, os.SEEK_END)
            if handle.tell():
                return cls(path, handle)
            handle.close()
        handle = open(path, "wb")
        journal = cls(path, handle)
        journal._line({"kind": JOURNAL_KIND, "schema_version": SCHEMA_VERSION, "run": run, "inputs": inputs})
        return journal

    def _line(self, data: dict[str, Any]) -> None:
        self._handle.write((jsonl_line(data) + "\n").encode("utf-8"))
        self._handle.flush()  # in the kernel's hands: a killed process loses nothing written

    def append(self, entry: dict[str, Any]) -> None:
        """Append one finished image's entry (its files are already in place)."""
        self._line(entry)

    def close(self) -> None:
        self._handle.close()

    def remove(self) -> None:
        """Close and delete the journal (``report.json`` now holds its entries)."""
        self.close()
        self.path.unlink(missing_ok=True)


def _complete_length(data: bytes) -> int:
    """Bytes of ``data`` up to and including its last newline (what survives a torn write)."""
    return data.rfind(b"\n") + 1


def read_journal(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The header and the entries of a journal, ignoring a torn last line."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise JournalError(f"cannot read {path} ({exc}); remove it or choose another --out") from None
    lines = data[: _complete_length(data)].splitlines()
    header: Any = None
    if lines:
        try:
            header = json.loads(lines[0])
        except ValueError:
            header = None
    if not (
        isinstance(header, dict)
        and header.get("kind") == JOURNAL_KIND
        and header.get("schema_version") == SCHEMA_VERSION
        and isinstance(header.get("run"), dict)
    ):
        raise JournalError(
            f"{path} is not an lrpcli journal of schema version {SCHEMA_VERSION}; remove it or choose another --out"
        )
    entries = []
    for line in lines[1:]:
        try:
            entry = json.loads(line)
        except ValueError:  # cannot happen for a complete line we wrote; skip rather than stop
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return header, entries


def _read_report(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            doc = json.load(handle)
    except (OSError, ValueError) as exc:
        raise JournalError(f"cannot read {path} ({exc}); remove it or choose another --out") from None
    if not (
        isinstance(doc, dict)
        and doc.get("kind") == REPORT_KIND
        and doc.get("schema_version") == SCHEMA_VERSION
        and isinstance(doc.get("run"), dict)
        and isinstance(doc.get("images"), list)
    ):
        raise JournalError(
            f"{path} is not an lrpcli report of schema version {SCHEMA_VERSION}; remove it or choose another --out"
        )
    return doc


@dataclass
class FinishedRun:
    """What an output folder holds: each source's ``run`` record, and its entries (later sources
    replace earlier entries of the same input), in the order first seen."""

    folder: Path
    runs: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    inputs: int = 0
    summary: dict[str, Any] | None = None  # report.json's, when there is one

    @property
    def run(self) -> dict[str, Any]:
        """The run record of the first source (the report's when there is one)."""
        return self.runs[0][1]

    @property
    def complete(self) -> bool:
        """A report and no journal: the run ended (it may still have been interrupted)."""
        return [p.name for p, _ in self.runs] == [REPORT_NAME]


def entry_key(entry: dict[str, Any]) -> tuple[str, str]:
    """What identifies an image across runs: its input path and mirrored relative path."""
    return (str(entry.get("input")), str(entry.get("rel")))


def read_finished(out_dir: Path) -> FinishedRun | None:
    """``OUT/report.json`` and ``OUT/journal.jsonl`` read together (``None``: neither exists)."""
    out_dir = Path(out_dir)
    report, journal = out_dir / REPORT_NAME, out_dir / JOURNAL_NAME
    if not report.exists() and not journal.exists():
        return None
    found = FinishedRun(out_dir)
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    if report.exists():
        doc = _read_report(report)
        found.runs.append((report, doc["run"]))
        found.summary = doc.get("summary") if isinstance(doc.get("summary"), dict) else None
        found.inputs = int((found.summary or {}).get("inputs") or 0)
        for raw in doc["images"]:
            if isinstance(raw, dict):
                by_key[entry_key(raw)] = raw
    if journal.exists():
        header, entries = read_journal(journal)
        found.runs.append((journal, header["run"]))
        found.inputs = max(found.inputs, int(header.get("inputs") or 0))
        for raw in entries:
            by_key[entry_key(raw)] = raw
    found.entries = list(by_key.values())
    return found
