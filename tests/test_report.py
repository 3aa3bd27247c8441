"""Tests for lrpcli.run.report: the streamed, atomically written report.json."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lrpcli.run.report import (
    REPORT_KIND,
    SCHEMA_VERSION,
    ReportWriter,
    dumps_entry,
    json_safe,
    jsonl_line,
    pretty_json,
)
from lrpcli.run.entries import ImageEntry, Prediction, Result, Target


def ok_entry(i: int, rel_closure: float = 1e-8, f_x: float = 2.0, steps: int = 3) -> ImageEntry:
    result = Result(
        image={"width": 4, "height": 3},
        top_k=[Prediction(1, "b", 0.9, f_x)],
        target=Target(1, "b", "predicted", 0.9),
        f_x=f_x,
        relevance={"sum": 1.0, "positive": 1.0, "negative": 0.0},
        conservation={"error": -1.0, "relative_error": -0.5},
        ledger={
            "f_x": f_x,
            "sum_pixels": 1.0,
            "closure_error": rel_closure * f_x,
            "relative_closure_error": rel_closure,
            "steps": [{"step": f"s{k}", "r_out": 1.0, "r_in": 1.0, "module": None} for k in range(steps)],
        },
    )
    return ImageEntry(i, f"img{i}.png", f"img{i}.png", result=result)


def error_entry(i: int) -> ImageEntry:
    return ImageEntry(i, f"bad{i}.png", f"bad{i}.png", status="error", error="not an image", warnings=["w"])


def test_report_document(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    with ReportWriter(path, {"model": {"name": "m"}}, inputs=4, tolerance=1e-5) as writer:
        writer.add(ok_entry(0, 1e-8))
        writer.add(error_entry(1))
        writer.add(ok_entry(2, 3e-7, f_x=-4.0))
        summary = writer.write(exit_code=1, elapsed_s=2.0, run_updates={"finished_at": "now"})
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["schema_version"] == SCHEMA_VERSION and doc["kind"] == REPORT_KIND
    assert list(doc) == ["schema_version", "kind", "run", "summary", "images"]
    assert doc["run"] == {"model": {"name": "m"}, "finished_at": "now"}
    assert [e["index"] for e in doc["images"]] == [0, 1, 2]
    assert doc["images"][0] == ok_entry(0, 1e-8).to_dict()
    s = doc["summary"]
    assert s == summary
    assert (s["inputs"], s["processed"], s["ok"], s["failed"], s["not_processed"]) == (4, 3, 2, 1, 1)
    assert s["failures"] == [{"input": "bad1.png", "error": "not an image"}]
    assert s["max_relative_closure_error"] == pytest.approx(3e-7)
    assert s["max_abs_closure_error"] == pytest.approx(1.2e-6)
    assert s["worst_closure_input"] == "img2.png"
    assert s["closure_check"] == "pass" and s["over_tolerance"] == []
    assert s["max_relative_conservation_error"] == 0.5
    assert s["images_with_warnings"] == 1
    assert s["exit_code"] == 1 and s["images_per_second"] == 1.0  # 2 explained in 2 s; the failure is not counted
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp files left


def test_closure_check_against_tolerance(tmp_path: Path) -> None:
    writer = ReportWriter(tmp_path / "r.json", {}, inputs=2, tolerance=1e-6)
    writer.add(ok_entry(0, 1e-8))
    writer.add(ok_entry(1, 2e-6))
    summary = writer.write()
    writer.close()
    assert summary["closure_check"] == "fail"
    assert summary["over_tolerance"] == ["img1.png"]


def test_empty_and_interrupted_report(tmp_path: Path) -> None:
    writer = ReportWriter(tmp_path / "r.json", {"x": 1}, inputs=40, tolerance=1e-5)
    summary = writer.write(interrupted=True, exit_code=130)
    writer.close()
    doc = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert doc["images"] == []
    assert summary["closure_check"] == "n/a"
    assert summary["interrupted"] is True and summary["not_processed"] == 40


def test_non_finite_numbers_become_null(tmp_path: Path) -> None:
    entry = ok_entry(0)
    assert entry.result is not None
    entry.result.f_x = math.nan
    entry.result.ledger["relative_closure_error"] = math.inf
    writer = ReportWriter(tmp_path / "r.json", {"v": np.float32(1.5), "t": torch.tensor([1.0, 2.0])}, inputs=1, tolerance=1e-5)
    writer.add(entry)
    summary = writer.write()
    writer.close()
    doc = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))  # strict JSON, no NaN
    assert doc["images"][0]["f_x"] is None
    assert doc["images"][0]["ledger"]["relative_closure_error"] is None
    assert doc["run"] == {"v": 1.5, "t": [1.0, 2.0]}
    assert summary["closure_check"] == "fail"  # an unknown closure error cannot pass


def test_rewrite_keeps_spool(tmp_path: Path) -> None:
    writer = ReportWriter(tmp_path / "r.json", {}, inputs=2, tolerance=1e-5)
    writer.add(ok_entry(0))
    writer.write()
    writer.add(ok_entry(1))
    writer.write()
    writer.close()
    doc = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert [e["index"] for e in doc["images"]] == [0, 1]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(7 if depth < 4 else 4)
    if kind == 0:
        return rng.random() * 10 - 5
    if kind == 1:
        return rng.randrange(-5, 100)
    if kind == 2:
        return rng.choice([None, True, False, "text", 'quo"te\n', "ünï"])
    if kind == 3:
        return "x" * rng.randrange(0, 120)
    if kind == 4:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(0, 6))]
    return {f"k{i}": random_value(rng, depth + 1) for i in range(rng.randrange(0, 5))}


def test_pretty_json_round_trips() -> None:
    rng = random.Random(0)
    for _ in range(300):
        value = random_value(rng)
        assert json.loads(pretty_json(value)) == value
        if isinstance(value, dict):
            assert json.loads(dumps_entry(value, level=2)) == value


def test_steps_one_per_line() -> None:
    text = dumps_entry(ok_entry(0, steps=4).to_dict(), level=2)
    lines = text.splitlines()
    step_lines = [line for line in lines if line.lstrip().startswith('{"step"')]
    assert len(step_lines) == 4
    assert all(line.startswith(" " * 8) for line in step_lines)


def test_jsonl_line() -> None:
    line = jsonl_line(ok_entry(3).to_dict())
    assert "\n" not in line
    assert json.loads(line) == ok_entry(3).to_dict()
    assert json_safe({"a": (1, np.int64(2)), "b": Path("x/y")}) == {"a": [1, 2], "b": "x/y"}


def test_rate_counts_only_images_this_run_explained(tmp_path: Path) -> None:
    with ReportWriter(tmp_path / "report.json", {}, inputs=5, tolerance=1e-5) as writer:
        writer.add(ok_entry(0, 1e-8), reused=True)  # from an earlier run (--resume)
        writer.add(ok_entry(1, 1e-8))
        writer.add(error_entry(2))
        writer.add(error_entry(3))
        s = writer.write(exit_code=1, elapsed_s=0.5)
    assert (s["ok"], s["reused"], s["failed"]) == (2, 1, 2)
    assert s["images_per_second"] == 2.0  # one image explained in 0.5 s
    with ReportWriter(tmp_path / "failed.json", {}, inputs=5, tolerance=1e-5) as writer:
        for i in range(5):
            writer.add(error_entry(i))
        assert writer.write(exit_code=1, elapsed_s=0.5)["images_per_second"] == 0.0  # nothing explained
