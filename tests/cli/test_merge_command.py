"""``lrp merge`` (lrpcli.cli.merge; tests/test_merge.py tests lrpcli.run.merge): the N shards of a
run merged give the unsharded run's entries; shards of different runs are refused with exit 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import lrp, noise_file, report, write_tiny_model


def tiny(folder: Path, seed: int = 0) -> list[str]:
    config = write_tiny_model(folder, size=16, seed=seed)
    return ["-c", str(config), "--allow-python", str(folder / "model.py")]


@pytest.fixture()
def pics(tmp_path: Path) -> Path:
    for i in range(15):
        noise_file(tmp_path / "pics" / f"img{i:02d}.png", size=(40, 30), seed=i)
    noise_file(tmp_path / "pics" / "sub" / "deep.png", seed=99)
    return tmp_path / "pics"


def comparable(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k not in ("timing", "outputs")} for e in entries]


def test_merged_shards_equal_the_unsharded_run(tmp_path: Path, pics: Path) -> None:
    model = tiny(tmp_path / "model")
    assert lrp("explain", pics, *model, "-o", tmp_path / "whole", "-b", "1", "-q").exit_code == 0
    for k in (1, 2, 3):
        result = lrp("explain", pics, *model, "-o", tmp_path / "shards" / str(k), "-b", "1", "--shard", f"{k}/3", "-q")
        assert result.exit_code == 0, result.stderr
    shards = [tmp_path / "shards" / str(k) for k in (3, 1, 2)]  # any order
    result = lrp("merge", *shards, "--out", tmp_path / "shards", "--json")
    assert result.exit_code == 0, result.stderr
    merged, whole = report(tmp_path / "shards"), report(tmp_path / "whole")
    assert result.stdout == (tmp_path / "shards" / "report.json").read_text(encoding="utf-8")
    assert comparable(merged["images"]) == comparable(whole["images"])
    for mine, theirs in zip(merged["images"], whole["images"]):
        for key, name in theirs["outputs"].items():  # the same files, named from the merged report
            assert (tmp_path / "shards" / mine["outputs"][key]).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    summary = merged["summary"]
    assert (summary["inputs"], summary["processed"], summary["ok"], summary["failed"]) == (16, 16, 16, 0)
    assert summary["worst_closure_input"] == whole["summary"]["worst_closure_input"]
    assert summary["images_per_second"] > 0 and len(merged["run"]["merged"]["shards"]) == 3

    again = lrp("merge", *shards, "--out", tmp_path / "shards")
    assert again.exit_code == 2 and "already exists; pass --overwrite" in again.stderr


def test_refusals(tmp_path: Path, pics: Path) -> None:
    model = tiny(tmp_path / "model")
    other = tiny(tmp_path / "retrained", seed=1)  # other weights: another config digest

    def shard(name: str, k: int, *extra: str) -> Path:
        out = tmp_path / name
        assert lrp("explain", pics, *extra, "-o", out, "--shard", f"{k}/2", "-q").exit_code == 0
        return out

    one = shard("one", 1, *model)
    cases = [
        ([one, shard("weights", 2, *other)], "different config"),
        ([one, shard("topk", 2, *model, "--top-k", "2")], "different --top-k"),
        ([one, shard("again", 1, *model)], "shard 1/2 is in both"),
    ]
    for folders, message in cases:
        result = lrp("merge", *folders, "--out", tmp_path / "merged")
        assert result.exit_code == 2, result.stderr
        assert message in result.stderr
        assert not (tmp_path / "merged" / "report.json").exists()
    whole = tmp_path / "whole"
    assert lrp("explain", pics, *model, "-o", whole, "-q").exit_code == 0
    two = shard("two", 2, *model)
    result = lrp("merge", whole, two, "--out", tmp_path / "merged")
    assert result.exit_code == 2 and "different --shard counts" in result.stderr
    result = lrp("merge", one, two, "--out", one)
    assert result.exit_code == 2 and "one of the shards' folders" in result.stderr
