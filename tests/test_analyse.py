"""lrpcli.audit.analyse: a generated run's maps streamed, grouped by class, clustered where a class
is large enough, and what could not be read counted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from audit_runs import synthetic_run

from lrpcli.audit.analyse import AuditSettings, audit_run
from lrpcli.audit.maps import read_run


def test_audit_finds_the_marked_maps_and_skips_small_classes(tmp_path: Path) -> None:
    planted = synthetic_run(tmp_path / "run", {"cat": 40, "dog": 5}, marked={"cat": 0.3}, failed=1)
    (tmp_path / "run" / "data/cat/00039.relevance.npy").unlink()  # one map gone
    seen: list[int] = []
    done = audit_run(read_run(tmp_path / "run"), AuditSettings(size=16), progress=seen.append)
    assert seen[-1] == 44 == len(done.images) and done.features.shape == (44, 256)
    assert done.not_explained == 1 and done.no_relevance == 0
    assert [name for name, _ in done.unreadable] == ["data/cat/00039.png"]
    cat, dog = done.classes
    assert (cat.label, len(cat.members), dog.label, len(dog.members)) == ("cat", 39, "dog", 5)
    assert dog.spray is None and "at least 10 images" in (dog.skipped or "")
    assert dog.where["border"] is not None
    assert cat.spray is not None and cat.spray.suggested == 2
    corner = max(cat.clusters, key=lambda k: k.where["top_left"] or 0)
    members = {done.images[i].image.input for i in corner.members}
    assert members == planted["cat"]
    assert corner.where["top_left"] > 0.5 and corner.mean_map.shape == (16, 16)
    assert len(corner.prototypes) == 6 and set(corner.prototypes) <= set(corner.members)
    distances = [done.images[i].distance for i in corner.members]
    assert min(distances) == done.images[corner.prototypes[0]].distance


def test_boxes_give_outside_shares(tmp_path: Path) -> None:
    synthetic_run(tmp_path / "run", {"cat": 12}, marked={"cat": 0.5})
    boxes = {"data/cat/00000.png": (32.0, 32.0, 64.0, 64.0)}  # the bottom-right quarter; its blob is top-left
    done = audit_run(read_run(tmp_path / "run"), AuditSettings(boxes=boxes, min_images=12))
    shares = [item.where["outside_box"] for item in done.images]
    assert shares[1:] == [None] * 11
    assert shares[0] is not None and shares[0] > 0.75
    assert shares[0] + done.images[0].where["bottom_right"] == pytest.approx(1.0)  # the box is that quadrant


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        AuditSettings(min_images=2)
    with pytest.raises(ValueError, match="cannot exceed"):
        AuditSettings(clusters=20)


def test_memory_holds_downsized_maps_only(tmp_path: Path) -> None:
    synthetic_run(tmp_path / "run", {"cat": 20}, size=128)
    done = audit_run(read_run(tmp_path / "run"), AuditSettings(size=8, min_images=20))
    assert done.features.dtype == np.float32 and done.features.shape == (20, 64)
