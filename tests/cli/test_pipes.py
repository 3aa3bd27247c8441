"""A reader closing standard output (``lrp … | head -1``): the run stops, exits 0, no traceback.

The read end of the pipe is closed before ``lrp`` starts, so its first write to standard output
fails every time (``head -1`` closes it after one line; the effect on ``lrp`` is the same).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_images, write_config

TINY = "model: {embedded: efficientnet_lite0}\npreprocess: {resize: 32, crop: 32}\nrules: epsilon\n"


def run_closed(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m lrpcli ARGS`` with standard output a pipe nobody reads (closed read end)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "lrpcli", *map(str, args)],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=timeout,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    finally:
        os.close(write)


@pytest.mark.parametrize(
    "args",
    [("models",), ("composites",), ("config", "check", "default"), ("inspect", "--model", "efficientnet_lite0")],
    ids=["models", "composites", "config-check", "inspect"],
)
def test_listing_commands_exit_0_on_a_closed_pipe(args: tuple[str, ...]) -> None:
    done = run_closed(*args)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_explain_jsonl_stops_launching_work(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    make_images(folder, 24)
    config = write_config(tmp_path, TINY)
    out = tmp_path / "out"
    done = run_closed("explain", folder, "-c", config, "-o", out, "--jsonl", "--batch-size", "1", "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "error:" not in done.stderr
    assert "standard output closed by its reader" in done.stderr and "--resume" in done.stderr
    summary = json.loads((out / "report.json").read_text(encoding="utf-8"))["summary"]
    assert summary["stdout_closed"] is True and summary["interrupted"] is False
    assert 1 <= summary["processed"] <= 6 and summary["not_processed"] == 24 - summary["processed"]
    assert summary["exit_code"] == 0
