"""Tests for lrpcli.run.journal: one flushed line per finished image, a torn last line ignored,
resuming appends, and a folder's report and journal read together."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lrpcli.run.journal import Journal, JournalError, entry_key, read_finished, read_journal
from lrpcli.run.outputs import JOURNAL_NAME, REPORT_NAME
from lrpcli.run.entries import ImageEntry
from lrpcli.run.report import ReportWriter

RUN = {"config": {"sha256": "a" * 64}, "options": {"target": "pred"}}


def entry(index: int, name: str, status: str = "ok") -> dict:
    return {"index": index, "input": f"in/{name}.png", "rel": f"in/{name}.png", "status": status, "error": None}


def test_each_entry_is_on_disk_as_soon_as_it_is_appended(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path, RUN, inputs=3)
    journal.append(entry(0, "a"))
    header, entries = read_journal(tmp_path / JOURNAL_NAME)  # read while the journal is open
    assert header["run"] == RUN and header["inputs"] == 3
    assert entries == [entry(0, "a")]
    journal.append(entry(1, "b"))
    assert read_journal(tmp_path / JOURNAL_NAME)[1] == [entry(0, "a"), entry(1, "b")]
    journal.remove()
    assert not (tmp_path / JOURNAL_NAME).exists()


def test_a_torn_last_line_is_ignored_and_cut_off_on_resume(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path, RUN, inputs=3)
    journal.append(entry(0, "a"))
    journal.close()
    path = tmp_path / JOURNAL_NAME
    with open(path, "ab") as handle:
        handle.write(b'{"index": 1, "input": "in/b.pn')  # killed in the middle of a line
    assert read_journal(path)[1] == [entry(0, "a")]
    again = Journal.open(tmp_path, {"other": True}, inputs=3, resume=True)  # appends, keeps the header
    again.append(entry(2, "c"))
    again.close()
    header, entries = read_journal(path)
    assert header["run"] == RUN and entries == [entry(0, "a"), entry(2, "c")]
    assert all(json.loads(line) for line in path.read_text(encoding="utf-8").splitlines())


def test_open_without_resume_starts_afresh(tmp_path: Path) -> None:
    Journal.open(tmp_path, RUN, inputs=1).append(entry(0, "a"))
    fresh = Journal.open(tmp_path, RUN, inputs=1)
    fresh.close()
    assert read_journal(tmp_path / JOURNAL_NAME)[1] == []


def test_not_a_journal(tmp_path: Path) -> None:
    (tmp_path / JOURNAL_NAME).write_text('{"kind": "something else"}\n', encoding="utf-8")
    with pytest.raises(JournalError, match="not an lrpcli journal"):
        read_journal(tmp_path / JOURNAL_NAME)
    assert read_finished(tmp_path / "nothing") is None


def test_report_and_journal_read_together(tmp_path: Path) -> None:
    """A resumed run killed again: its report holds the first run's entries, its journal the rest
    (and a later entry of the same image replaces the earlier one)."""
    with ReportWriter(tmp_path / REPORT_NAME, RUN, inputs=3, tolerance=1e-5) as writer:
        writer.add(ImageEntry.from_dict(entry(0, "a")))
        writer.add(ImageEntry.from_dict({**entry(1, "b", "error"), "error": "bad"}))
        writer.write()
    journal = Journal.open(tmp_path, RUN, inputs=3)
    journal.append(entry(1, "b"))
    journal.append(entry(2, "c"))
    journal.close()
    found = read_finished(tmp_path)
    assert found is not None and not found.complete
    assert [p.name for p, _ in found.runs] == [REPORT_NAME, JOURNAL_NAME]
    assert [(e["input"], e["status"]) for e in found.entries] == [
        ("in/a.png", "ok"),
        ("in/b.png", "ok"),
        ("in/c.png", "ok"),
    ]
    assert found.inputs == 3 and entry_key(found.entries[0]) == ("in/a.png", "in/a.png")
    (tmp_path / JOURNAL_NAME).unlink()
    assert read_finished(tmp_path).complete  # type: ignore[union-attr]
