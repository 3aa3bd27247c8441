"""Tests for lrpcli.run.outputs: where outputs go, and the checks that writing them is safe."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from conftest import make_images
from lrpcli.io.inputs import discover
from lrpcli.run.outputs import OutputConflict, drop_previous_outputs, output_paths, plan_outputs


def test_output_paths_mirror_rel(tmp_path: Path) -> None:
    plan = output_paths(tmp_path, Path("a/b/cat.photo.jpg"), save_npy=True)
    assert plan.heatmap == tmp_path / "a/b/cat.photo.heatmap.png"
    assert plan.overlay == tmp_path / "a/b/cat.photo.overlay.png"
    assert plan.relevance == tmp_path / "a/b/cat.photo.relevance.npy"
    assert output_paths(tmp_path, Path("noext")).heatmap == tmp_path / "noext.heatmap.png"


def test_existing_outputs_need_overwrite(tmp_path: Path) -> None:
    inputs = make_images(tmp_path / "imgs", 3)
    out = tmp_path / "out"
    plans = plan_outputs(inputs, out)
    assert plans[1].overlay == out / "imgs" / "img01.overlay.png"
    plans[1].overlay.parent.mkdir(parents=True)
    plans[1].overlay.write_bytes(b"old")
    (out / "report.json").write_text("{}", encoding="utf-8")
    with pytest.raises(OutputConflict) as info:
        plan_outputs(inputs, out)
    assert str(plans[1].overlay) in str(info.value) and "--overwrite" in str(info.value)
    plans[1].overlay.unlink()
    with pytest.raises(OutputConflict, match="report.json already exists"):
        plan_outputs(inputs, out)
    plan_outputs(inputs, out, overwrite=True)


def test_never_over_an_input(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    Image.new("RGB", (4, 4)).save(folder / "a.png")
    Image.new("RGB", (4, 4)).save(folder / "a.heatmap.png")
    inputs = discover([str(folder / "a.png"), str(folder / "a.heatmap.png")])
    with pytest.raises(OutputConflict, match="is one of the input images"):
        plan_outputs(inputs, folder, overwrite=True)


def test_never_outside_out(tmp_path: Path) -> None:
    inputs = make_images(tmp_path / "imgs", 1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "imgs").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(OutputConflict, match="outside the output folder"):
        plan_outputs(inputs, out, overwrite=True)
    (out / "imgs").unlink()
    (out / "imgs").mkdir()
    (out / "imgs" / "img00.heatmap.png").symlink_to(elsewhere / "x.png")
    with pytest.raises(OutputConflict, match="outside the output folder"):
        plan_outputs(inputs, out, overwrite=True)
    assert list(elsewhere.iterdir()) == []


def test_out_must_be_a_folder(tmp_path: Path) -> None:
    inputs = make_images(tmp_path / "imgs", 1)
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(OutputConflict, match="not a folder"):
        plan_outputs(inputs, tmp_path / "file")


def test_drop_previous_outputs(tmp_path: Path) -> None:
    inputs = make_images(tmp_path / "imgs", 2)
    out = tmp_path / "imgs" / "out"
    out.mkdir()
    Image.new("RGB", (4, 4)).save(out / "img00.heatmap.png")
    Image.new("RGB", (4, 4)).save(out / "img00.overlay.png")
    Image.new("RGB", (4, 4)).save(out / "keep.png")
    kept, dropped = drop_previous_outputs(discover([str(tmp_path / "imgs")]), out)
    assert sorted(p.path.name for p in dropped) == ["img00.heatmap.png", "img00.overlay.png"]
    assert sorted(p.path.name for p in kept) == ["img00.png", "img01.png", "keep.png"]
    kept, dropped = drop_previous_outputs(discover([str(tmp_path / "imgs")]), out, keep=[out / "img00.overlay.png"])
    assert [p.path.name for p in dropped] == ["img00.heatmap.png"]  # named files are kept
    assert len(inputs) == 2
