"""A command's JSON document: written to its file atomically, and with ``--json`` to standard output."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lrpcli.io.files import atomic_write
from lrpcli.run.report import json_safe, pretty_json

__all__ = ["write_document"]


def write_document(path: Path, doc: Any, *, to_stdout: bool) -> None:
    """Write ``doc`` as pretty JSON to ``path``; with ``to_stdout`` print the same text (a closed
    pipe on standard output is not an error)."""
    text = pretty_json(json_safe(doc)) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
    if to_stdout:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            pass
