"""write_document: the file and standard output carry the same JSON text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lrpcli.cli.documents import write_document


def test_file_and_stdout_are_the_same_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = {"kind": "x", "value": float("nan"), "rows": [1, 2]}
    write_document(tmp_path / "doc.json", doc, to_stdout=True)
    printed = capsys.readouterr().out
    assert printed == (tmp_path / "doc.json").read_text(encoding="utf-8")
    assert json.loads(printed) == {"kind": "x", "value": None, "rows": [1, 2]}  # NaN is not JSON
    write_document(tmp_path / "quiet.json", doc, to_stdout=False)
    assert capsys.readouterr().out == ""
