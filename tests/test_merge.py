"""Tests for lrpcli.run.merge: shards merged in input order with a recomputed summary; refusals
when the shards differ in config, model, composite or options, repeat a shard, or overlap."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from lrpcli.run.entries import ImageEntry
from lrpcli.run.journal import Journal
from lrpcli.run.merge import MergeError, merge_runs, write_merged
from lrpcli.run.outputs import REPORT_NAME
from lrpcli.run.report import ReportWriter

RUN: dict[str, Any] = {
    "started_at": "2026-01-01T10:00:00.000+00:00",
    "finished_at": "2026-01-01T10:00:10.000+00:00",
    "config": {"sha256": "a" * 64, "resolved": {"report": {"tolerance": 1e-5}}},
    "model": {"source": "embedded", "name": "m", "weights": None, "num_classes": 3},
    "composite": {"name": "epsilon", "spec": "epsilon", "options": {}},
    "options": {"target": "pred", "top_k": 5, "save_npy": False, "composites": None},
}


def ok(index: int, name: str, closure: float = 1e-8) -> ImageEntry:
    return ImageEntry.from_dict(
        {
            "index": index, "input": f"in/{name}.png", "rel": f"in/{name}.png", "status": "ok", "error": None,
            "outputs": {"heatmap": f"in/{name}.heatmap.png", "overlay": f"in/{name}.overlay.png"},
            "top_k": [], "target": {"index": 0, "label": "a", "source": "predicted", "probability": 1.0},
            "f_x": 1.0, "relevance": {"sum": 1.0}, "conservation": {"pixel_share": 0.5},
            "ledger": {"relative_closure_error": closure, "closure_error": closure},
        }
    )  # fmt: skip


def shard(folder: Path, k: int, n: int, entries: list[ImageEntry], **changes: Any) -> Path:
    run = copy.deepcopy(RUN)
    run.update(changes)
    run["shard"] = {"index": k, "count": n, "inputs": len(entries), "all_inputs": 5}
    folder.mkdir(parents=True)
    with ReportWriter(folder / REPORT_NAME, run, inputs=len(entries), tolerance=1e-5) as writer:
        for e in entries:
            writer.add(e)
        writer.write(elapsed_s=10.0)
    return folder


def test_merged_in_input_order_with_a_recomputed_summary(tmp_path: Path) -> None:
    a = shard(tmp_path / "s1", 1, 2, [ok(0, "a"), ok(3, "d", closure=3e-7)])
    b = shard(tmp_path / "s2", 2, 2, [ok(1, "b"), ok(2, "c"), ok(4, "e")])
    merged = merge_runs([a, b], tmp_path)
    assert [(e.index, e.input) for e in merged.entries] == [(i, f"in/{n}.png") for i, n in enumerate("abcde")]
    assert merged.entries[0].outputs["heatmap"] == "s1/in/a.heatmap.png"  # relative to the merged report
    assert merged.inputs == 5 and merged.elapsed_s == pytest.approx(10.0) and not merged.warnings
    summary = write_merged(merged, tmp_path / REPORT_NAME)
    assert (summary["processed"], summary["ok"], summary["failed"]) == (5, 5, 0)
    assert summary["worst_closure_input"] == "in/d.png" and summary["images_per_second"] == pytest.approx(0.5)
    assert merged.run["merged"]["folders"] == [a.as_posix(), b.as_posix()] and "shard" not in merged.run


def test_missing_shards_and_journals_are_merged_with_a_warning(tmp_path: Path) -> None:
    a = shard(tmp_path / "s1", 1, 3, [ok(0, "a")])
    killed = tmp_path / "s2"
    killed.mkdir()
    journal = Journal.open(killed, {**RUN, "shard": {"index": 2, "count": 3, "inputs": 2}}, inputs=2)
    journal.append(ok(1, "b").to_dict())
    journal.close()
    merged = merge_runs([a, killed], tmp_path / "merged")
    assert [e.input for e in merged.entries] == ["in/a.png", "in/b.png"]
    assert merged.entries[1].outputs["overlay"] == "../s2/in/b.overlay.png"
    assert any("shards 3/3 are missing" in w for w in merged.warnings)
    assert any("did not finish" in w for w in merged.warnings)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"config": {"sha256": "b" * 64}}, "different config"),
        ({"model": {**RUN["model"], "weights": "OTHER"}}, "different model"),
        ({"composite": {**RUN["composite"], "name": "zplus"}}, "different composite"),
        ({"options": {**RUN["options"], "top_k": 3}}, "different --top-k"),
    ],
)
def test_refuses_shards_of_different_runs(tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    a = shard(tmp_path / "s1", 1, 2, [ok(0, "a")])
    b = shard(tmp_path / "s2", 2, 2, [ok(1, "b")], **changes)
    with pytest.raises(MergeError, match=message):
        merge_runs([a, b], tmp_path)


def test_refuses_overlap_and_repeated_shards(tmp_path: Path) -> None:
    a = shard(tmp_path / "s1", 1, 2, [ok(0, "a")])
    b = shard(tmp_path / "s2", 2, 2, [ok(1, "b"), ok(2, "a")])
    with pytest.raises(MergeError, match="in/a.png is in both .*s1 and .*s2: the shards overlap"):
        merge_runs([a, b], tmp_path)
    c = shard(tmp_path / "s3", 1, 2, [ok(1, "c")])
    with pytest.raises(MergeError, match="shard 1/2 is in both"):
        merge_runs([a, c], tmp_path)
    d = shard(tmp_path / "s4", 2, 3, [ok(1, "d")])
    with pytest.raises(MergeError, match="different --shard counts"):
        merge_runs([a, d], tmp_path)
    with pytest.raises(MergeError, match="no report.json or journal.jsonl"):
        merge_runs([a, tmp_path / "empty"], tmp_path)
