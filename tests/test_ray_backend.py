"""Tests for lrpcli.run.ray_backend (``lrp explain --backend ray``) on a local Ray instance of at most
2 CPUs, each run in its own process (which starts and shuts down its Ray instance): the same files
and entries as the local backend, and a run that survives a killed Ray worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import lrp, noise_file, report, write_tiny_model

from lrpcli.run.journal import read_journal
from lrpcli.run.outputs import JOURNAL_NAME

pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a Ray instance takes 10-20 s to start on 2 CPUs


@pytest.fixture()
def tiny(tmp_path: Path) -> list[str]:
    config = write_tiny_model(tmp_path / "model", size=16)
    return ["-c", str(config), "--allow-python", str(tmp_path / "model" / "model.py"), "--device", "cpu"]


def images(folder: Path, n: int, size: tuple[int, int] = (40, 30)) -> Path:
    for i in range(n):
        noise_file(folder / f"img{i:03d}.png", size=size, seed=i)
    noise_file(folder / "sub" / "other.png", size=size, seed=1000)
    (folder / "broken.png").write_bytes(b"not a png")  # an error entry goes through the steps too
    return folder


def two_cpus() -> None:
    """In the child: run on at most 2 of the CPUs this process may use."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:2])


def ray_explain(cwd: Path, *args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "lrpcli", "explain", *map(str, args), "--backend", "ray", "--jsonl"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=two_cpus,  # the local Ray instance is sized to the CPUs the process may use
    )


def comparable(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "timing"} for e in entries]


def same_files(a: Path, b: Path) -> None:
    names = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert names and names == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_ray_backend_equals_the_local_backend(tmp_path: Path, tiny: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    images(tmp_path / "pics", 13)
    common = ["pics", *tiny, "-b", "4", "--save-npy"]
    monkeypatch.chdir(tmp_path)
    assert lrp("explain", *common, "-o", "local", "-q").exit_code == 1
    proc = ray_explain(tmp_path, *common, "-o", "ray")  # relative paths: the workers use the driver's folder
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr  # the broken file
    lines = [json.loads(line) for line in stdout.splitlines()]  # standard output: entries only
    local, ray = report(tmp_path / "local"), report(tmp_path / "ray")
    assert [e["input"] for e in lines] == [e["input"] for e in ray["images"]]
    assert comparable(ray["images"]) == comparable(local["images"])
    assert ray["run"]["backend"]["name"] == "ray" and ray["run"]["backend"]["actors"] == 1
    same_files(tmp_path / "local", tmp_path / "ray")
    for entry in ray["images"]:
        if entry["status"] == "ok":
            relevance = np.load(tmp_path / "ray" / entry["outputs"]["relevance"])
            assert float(relevance.sum(dtype=np.float64)) == pytest.approx(entry["relevance"]["sum"], rel=1e-5, abs=1e-7)
    assert not (tmp_path / "ray" / JOURNAL_NAME).exists()


def descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        here = frontier.pop()
        children = [p for p, parent in parents.items() if parent == here]
        found += children
        frontier += children
    return found


def explaining_worker(pid: int) -> int | None:
    """A Ray worker below ``pid`` that runs the explaining actor, if there is one yet."""
    for child in descendants(pid):
        try:
            title = Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "ray::" in title and "_Explain" in title:
            return child
    return None


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the Ray worker through /proc")
def test_a_killed_ray_worker_does_not_lose_or_repeat_images(tmp_path: Path, tiny: list[str]) -> None:
    total = 40
    folder = images(tmp_path / "pics", total, size=(320, 240))
    out = tmp_path / "out"
    proc = ray_explain(tmp_path, folder, *tiny, "-b", "2", "-o", out)
    killed = None
    try:
        deadline = time.monotonic() + 240
        while killed is None:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the explaining actor never ran"
            journal = out / JOURNAL_NAME
            if journal.exists() and len(read_journal(journal)[1]) >= 2:
                killed = explaining_worker(proc.pid)
                if killed is not None:
                    os.kill(killed, signal.SIGKILL)  # a process this test started (through lrp and Ray)
            time.sleep(0.05)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stderr  # the broken file
    doc = report(out)
    assert doc["summary"]["processed"] == total + 2 and doc["summary"]["not_processed"] == 0
    inputs = [e["input"] for e in doc["images"]]
    assert len(set(inputs)) == len(inputs) == total + 2  # every image exactly once
    assert [line for line in stdout.splitlines() if not line.startswith("{")] == []
    assert len(stdout.splitlines()) == total + 2
    assert lrp("explain", folder, *tiny, "-b", "2", "-o", tmp_path / "local", "-q").exit_code == 1
    assert comparable(doc["images"]) == comparable(report(tmp_path / "local")["images"])
    same_files(tmp_path / "local", out)
