"""Interrupted and resumed runs of ``lrp explain`` (issue #6): SIGINT mid-run leaves a valid
partial report and no partial file; ``--resume`` finishes the rest, reuses what was done and
does no work when everything is done."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from conftest import lrp, report, write_tiny_model

from lrpcli.cli import explain_run, loading





def make_folder(folder: Path, n: int, start: int = 0, size: tuple[int, int] = (40, 30)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"img{i:03d}.png")




def mtimes(out: Path) -> dict[str, int]:
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*.png")}


@pytest.fixture()
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    config = write_tiny_model(tmp_path / "model", size=16)
    return config, tmp_path / "model" / "model.py"


def test_sigint_then_resume(tmp_path: Path, tiny: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    config, code = tiny
    total = 300
    folder = tmp_path / "many"
    make_folder(folder, total, size=(320, 240))
    out = tmp_path / "out"
    args = ["explain", str(folder), "-c", str(config), "--allow-python", str(code), "-o", str(out), "-b", "2"]
    err_path = tmp_path / "stderr.txt"
    # stderr to a file: the test reads stdout line by line and then to the end through the same
    # buffered reader (communicate() would read the pipe directly and lose what readline buffered)
    with open(err_path, "w", encoding="utf-8") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lrpcli", *args, "--jsonl"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=err_file,
            text=True,
        )
        lines: list[str] = []
        try:
            assert proc.stdout is not None
            deadline = time.monotonic() + 120
            while len(lines) < 3:  # some images are finished and reported
                line = proc.stdout.readline()
                assert line, err_path.read_text(encoding="utf-8")
                lines.append(line)
                assert time.monotonic() < deadline
            proc.send_signal(signal.SIGINT)
            rest = proc.stdout.read()
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    stderr = err_path.read_text(encoding="utf-8")
    lines += rest.splitlines()
    assert all(line.startswith("{") and line.rstrip().endswith("}") for line in lines), lines
    assert proc.returncode == 130, stderr
    assert "interrupt received" in stderr
    doc = report(out)
    summary = doc["summary"]
    done = summary["processed"]
    assert summary["interrupted"] and summary["exit_code"] == 130
    assert 3 <= done < total and summary["not_processed"] == total - done
    assert [e["index"] for e in doc["images"]] == list(range(done))
    assert [json.loads(line)["input"] for line in lines] == [e["input"] for e in doc["images"]]
    assert all(e["status"] == "ok" for e in doc["images"])
    written = sorted(out.rglob("*.png"))
    assert len(written) == 2 * done  # a heatmap and an overlay per finished image, nothing else
    assert not [p for p in out.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    for png in written:
        with Image.open(png) as im:
            im.load()  # complete files only

    # --resume explains only the rest and leaves the finished files alone
    first = mtimes(out)
    result = lrp(*args, "--resume")
    assert result.exit_code == 0, result.stderr
    assert f"{done} of {total} images already done, {total - done} to explain" in result.stderr
    doc = report(out)
    summary = doc["summary"]
    assert (summary["processed"], summary["ok"], summary["reused"]) == (total, total, done)
    assert not summary["interrupted"] and summary["not_processed"] == 0
    assert [e["index"] for e in doc["images"]] == list(range(total))
    assert doc["run"]["resumed"]["reused"] == done
    second = mtimes(out)
    assert {k: second[k] for k in first} == first and len(second) == 2 * total

    # a second --resume does no work: no model is loaded, no image explained, no file written
    def must_not_run(*a: Any, **k: Any) -> Any:
        raise AssertionError("no work expected")

    monkeypatch.setattr(loading, "load_model", must_not_run)
    monkeypatch.setattr(explain_run, "Pipeline", must_not_run)
    result = lrp(*args, "--resume", "--jsonl")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert mtimes(out) == second
    again = report(out)
    assert again["summary"]["reused"] == total and again["summary"]["processed"] == total
    assert again["images"] == doc["images"]


def test_resume_merges_and_redoes_what_is_missing(tmp_path: Path, tiny: tuple[Path, Path]) -> None:
    config, code = tiny
    folder = tmp_path / "pics"
    make_folder(folder, 4)
    (folder / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    args = ["explain", folder, "-c", config, "--allow-python", code, "-o", out]
    assert lrp(*args, "--resume").exit_code == 1  # no report yet: a normal run (one failure)
    first = report(out)
    assert first["summary"]["reused"] == 0 and first["summary"]["failed"] == 1

    make_folder(folder, 2, start=10)  # new images
    (out / "pics" / "img001.overlay.png").unlink()  # an output lost since
    before = mtimes(out)
    result = lrp(*args, "--resume")
    assert result.exit_code == 1  # broken.png was retried and failed again
    doc = report(out)
    names = [Path(e["input"]).name for e in doc["images"]]
    assert names == sorted(names) and len(names) == 7
    summary = doc["summary"]
    assert (summary["processed"], summary["ok"], summary["failed"], summary["reused"]) == (7, 6, 1, 3)
    after = mtimes(out)
    kept = [f"pics/img{i:03d}.{k}.png" for i in (0, 2, 3) for k in ("heatmap", "overlay")]
    assert all(after[k] == before[k] for k in kept)
    assert after["pics/img001.heatmap.png"] != before["pics/img001.heatmap.png"]  # redone
    assert "pics/img001.overlay.png" in after and "pics/img010.heatmap.png" in after
    reused = {Path(e["input"]).name for e in doc["images"]} - {"img001.png", "img010.png", "img011.png", "broken.png"}
    old = {Path(e["input"]).name: e for e in first["images"]}
    for entry in doc["images"]:
        if Path(entry["input"]).name in reused:
            assert {k: v for k, v in entry.items() if k != "index"} == {k: v for k, v in old[Path(entry["input"]).name].items() if k != "index"}


def test_resume_keeps_the_images_of_a_run_with_comparison_grids(tmp_path: Path, tiny: tuple[Path, Path]) -> None:
    """The grid is one of a finished image's outputs: --resume --composites reuses, not redoes."""
    config, code = tiny
    folder = tmp_path / "pics"
    make_folder(folder, 3)
    out = tmp_path / "out"
    args = ["explain", folder, "-c", config, "--allow-python", code, "-o", out, "--composites", "config,epsilon_plus"]
    assert lrp(*args).exit_code == 0
    assert all("compare" in e["outputs"] for e in report(out)["images"])
    before = mtimes(out)
    (out / "pics" / "img001.compare.png").unlink()  # a grid lost since: that image is redone
    assert lrp(*args, "--resume").exit_code == 0
    summary = report(out)["summary"]
    assert (summary["processed"], summary["reused"]) == (3, 2)
    after = mtimes(out)
    assert all(after[k] == before[k] for k in before if not k.startswith("pics/img001."))
    assert "pics/img001.compare.png" in after


def test_resume_refuses_another_config(tmp_path: Path, tiny: tuple[Path, Path]) -> None:
    config, code = tiny
    make_folder(tmp_path / "pics", 2)
    out = tmp_path / "out"
    args = ["explain", tmp_path / "pics", "-c", config, "--allow-python", code, "-o", out]
    assert lrp(*args).exit_code == 0
    before = mtimes(out)
    result = lrp(*args, "--resume", "--cmap", "seismic")
    assert result.exit_code == 2
    assert "was written with another config" in result.stderr and "--overwrite" in result.stderr
    result = lrp(*args, "--resume", "--top-k", "2")
    assert result.exit_code == 2 and "--top-k 5 (now 2)" in result.stderr
    result = lrp(*args, "--resume", "--overwrite")
    assert result.exit_code == 2 and "cannot be combined" in result.stderr
    (out / "report.json").write_text("{not json", encoding="utf-8")
    result = lrp(*args, "--resume")
    assert result.exit_code == 2 and "cannot read" in result.stderr
    assert mtimes(out) == before


RANDOM_INIT = "model: {torchvision: squeezenet1_1, weights: none, num_classes: 3}\npreprocess: {resize: 32, crop: 32}\n"


def test_seed_makes_the_network_and_resume_refuses_another(tmp_path: Path) -> None:
    """A model built without weights is the same network for the same --seed (or model.seed):
    the same logits; another seed is another config digest, which --resume refuses."""
    config = tmp_path / "random.yaml"
    config.write_text(RANDOM_INIT, encoding="utf-8")
    make_folder(tmp_path / "pics", 2)
    small = tmp_path / "small" / "dot.png"
    small.parent.mkdir()
    Image.new("RGB", (1, 1), (200, 30, 30)).save(small)

    def run(out: str, *extra: str | Path) -> Any:
        return lrp("explain", tmp_path / "pics", small, "-c", config, "-o", tmp_path / out, *extra)

    def logits(out: str) -> list[list[float]]:
        return [[p["logit"] for p in e["top_k"]] for e in report(tmp_path / out)["images"]]

    assert run("a", "--seed", "3").exit_code == 0
    assert run("b", "--seed", "3").exit_code == 0
    assert run("c", "--seed", "4").exit_code == 0
    assert logits("a") == logits("b") != logits("c")
    runs = [report(tmp_path / o)["run"] for o in "abc"]
    assert runs[0]["config"]["sha256"] == runs[1]["config"]["sha256"] != runs[2]["config"]["sha256"]
    assert runs[0]["config"]["resolved"]["model"]["seed"] == 3
    assert runs[0]["model"]["weights_source"] == "none (random initialisation, seed 3)"

    refused = run("a", "--resume", "--seed", "4")
    assert refused.exit_code == 2 and "was written with another config" in refused.stderr
    assert run("a", "--resume", "--seed", "3").exit_code == 0

    # the 1x1 image is explained, with a warning on its entry; the 40x30 ones get none
    warnings = {Path(e["input"]).name: e["warnings"] for e in report(tmp_path / "a")["images"]}
    assert warnings["dot.png"] == [
        "upscaled from 1x1 pixels (32x) to the model's 32x32 input: the map shows interpolated "
        "pixels, not detail of the image"
    ]
    assert warnings["img000.png"] == [] and warnings["img001.png"] == []


def test_empty_standard_input_is_named_as_such(tmp_path: Path) -> None:
    result = lrp("explain", "-", "-o", tmp_path / "out", input="")
    assert result.exit_code == 2
    assert "standard input gave no paths" in result.stderr and "no image files found" not in result.stderr
