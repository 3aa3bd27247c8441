"""``lrp explain`` past one process: ``--shard`` (also from a Slurm array's environment), the
journal that survives SIGKILL and ``--resume`` after it, the option checks, and no ``ray`` import
without ``--backend ray``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from conftest import lrp, noise_file, report, write_tiny_model

from lrpcli.run.journal import read_journal
from lrpcli.run.outputs import JOURNAL_NAME
from lrpcli.run.shards import shard_of


@pytest.fixture()
def tiny(tmp_path: Path) -> list[str]:
    """``-c tiny.yaml --allow-python model.py``: the tiny user model, 16-pixel inputs."""
    config = write_tiny_model(tmp_path / "model", size=16)
    return ["-c", str(config), "--allow-python", str(tmp_path / "model" / "model.py")]


def images(folder: Path, n: int, size: tuple[int, int] = (40, 30)) -> Path:
    for i in range(n):
        noise_file(folder / f"img{i:03d}.png", size=size, seed=i)
    return folder


def without_timing(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "timing"} for e in entries]


def test_shard_auto_from_slurm(tmp_path: Path, tiny: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    folder = images(tmp_path / "pics", 12)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "0")
    result = lrp("explain", folder, *tiny, "-o", tmp_path / "out", "--shard", "auto", "-q")
    assert result.exit_code == 0, result.stderr
    doc = report(tmp_path / "out")
    expected = [i for i in range(12) if shard_of(f"pics/img{i:03d}.png", 3) == 2]
    assert doc["run"]["shard"] == {"index": 2, "count": 3, "inputs": len(expected), "all_inputs": 12}
    assert [e["index"] for e in doc["images"]] == expected  # the index among all inputs
    assert doc["summary"]["inputs"] == len(expected) and doc["run"]["options"]["shard"] == "auto"
    assert len(list((tmp_path / "out").rglob("*.overlay.png"))) == len(expected)


def test_resume_refuses_another_shard(tmp_path: Path, tiny: list[str]) -> None:
    folder, out = images(tmp_path / "pics", 6), tmp_path / "out"
    assert lrp("explain", folder, *tiny, "-o", out, "--shard", "1/2", "-q").exit_code == 0
    before = (out / "report.json").read_bytes()
    for args, message in (
        (["--shard", "2/2"], "was written for shard 1/2, this run is for shard 2/2"),
        ([], "was written for shard 1/2, this run is for all inputs (no --shard)"),
    ):
        result = lrp("explain", folder, *tiny, "-o", out, "--resume", *args)
        assert result.exit_code == 2 and message in result.stderr, result.stderr
        assert (out / "report.json").read_bytes() == before  # nothing rewritten
    result = lrp("explain", folder, *tiny, "-o", out, "--resume", "--shard", "1/2")
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shard", "auto"], "no array job found in the environment"),
        (["--shard", "4/3"], "shard 4 of 3 is out of range"),
        (["--ray-address", "auto"], "--ray-address applies to --backend ray"),
        (["--backend", "ray", "--fail-fast"], "--fail-fast works with --backend local only"),
    ],
)
def test_usage_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str) -> None:
    for name in ("SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"):
        monkeypatch.delenv(name, raising=False)
    result = lrp("explain", images(tmp_path / "pics", 1), "-o", tmp_path / "out", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert not (tmp_path / "out").exists()


def test_sigkill_then_resume(tmp_path: Path, tiny: list[str]) -> None:
    """A run killed with SIGKILL leaves its journal; --resume redoes only the images not in it,
    and the final report equals an uninterrupted run's (apart from timings)."""
    total = 80
    folder = images(tmp_path / "pics", total, size=(320, 240))
    out = tmp_path / "out"
    args = ["explain", str(folder), *tiny, "-o", str(out), "-b", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lrpcli", *args, "--jsonl", "-q"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        for _ in range(5):  # five images are finished (their journal lines come first)
            assert proc.stdout.readline() and time.monotonic() < deadline
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "report.json").exists()
    header, journaled = read_journal(out / JOURNAL_NAME)
    done = len(journaled)
    assert 5 <= done < total, "the run finished before it was killed: give it more images"
    assert header["inputs"] == total
    for png in out.rglob("*.png"):  # every PNG in place is whole (temporary files are not PNGs)
        with Image.open(png) as im:
            im.load()
    kept = {p: p.stat().st_mtime_ns for e in journaled for p in (out / e["outputs"]["heatmap"], out / e["outputs"]["overlay"])}

    result = lrp(*args, "--resume")
    assert result.exit_code == 0, result.stderr
    assert f"{done} of {total} images already done, {total - done} to explain" in result.stderr
    doc = report(out)
    assert (doc["summary"]["processed"], doc["summary"]["reused"], doc["summary"]["ok"]) == (total, done, total)
    assert [e["index"] for e in doc["images"]] == list(range(total))
    assert len({e["input"] for e in doc["images"]}) == total  # each image exactly once
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # the journaled images were not redone
    assert not (out / JOURNAL_NAME).exists()
    assert not [p for p in out.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert len(list(out.rglob("*.png"))) == 2 * total

    whole = tmp_path / "whole"
    assert lrp(*args[:-2], "-o", whole, "-b", "1", "-q").exit_code == 0
    assert without_timing(doc["images"]) == without_timing(report(whole)["images"])


def test_resume_after_sigkill_ignores_a_torn_line(tmp_path: Path, tiny: list[str]) -> None:
    folder = images(tmp_path / "pics", 6)
    out = tmp_path / "out"
    args = ["explain", folder, *tiny, "-o", out, "-b", "1", "-q"]
    assert lrp(*args).exit_code == 0
    first = report(out)
    # rebuild what a run killed after image 3, in the middle of image 4's line, leaves behind
    lines = [json.dumps({"kind": "lrpcli.journal", "schema_version": 1, "run": first["run"], "inputs": 6})]
    lines += [json.dumps(e) for e in first["images"][:3]]
    (out / "report.json").unlink()
    (out / JOURNAL_NAME).write_text("\n".join(lines) + "\n" + json.dumps(first["images"][3])[:50], encoding="utf-8")
    (out / "pics" / ".img004.heatmap.png.0123456789ab.tmp").write_bytes(b"\x89PNG half")
    result = lrp(*args, "--resume")
    assert result.exit_code == 0, result.stderr
    doc = report(out)
    assert doc["summary"]["reused"] == 3 and doc["summary"]["processed"] == 6
    assert without_timing(doc["images"]) == without_timing(first["images"])
    assert not list(out.rglob("*.tmp")) and not (out / JOURNAL_NAME).exists()


PROBE = """
import sys
from typer.testing import CliRunner
from lrpcli.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
print(result.exit_code, "ray" in sys.modules)
"""


def test_local_backend_does_not_import_ray(tmp_path: Path, tiny: list[str]) -> None:
    folder = images(tmp_path / "pics", 2)
    args = ["explain", str(folder), *tiny, "-o", str(tmp_path / "out"), "-q"]
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["0", "False"], proc.stderr
