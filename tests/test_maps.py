"""lrpcli.audit.maps: the report read entry by entry, saved maps loaded and downsized."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from audit_runs import synthetic_run

from lrpcli.audit.maps import (
    AuditError,
    MapError,
    downsize,
    explained_image,
    load_map,
    normalise,
    pool_matrix,
    read_report,
    read_run,
)


@pytest.mark.parametrize(("n", "size"), [(224, 32), (64, 32), (100, 32), (16, 32), (33, 8)])
def test_pool_matrix_keeps_every_pixel_once(n: int, size: int) -> None:
    weights = pool_matrix(n, size)
    assert weights.shape == (size, n)
    np.testing.assert_allclose(weights.sum(axis=0), 1.0, atol=1e-6)
    np.testing.assert_allclose(weights.sum(axis=1), n / size, atol=1e-5)


def test_downsize_is_a_block_sum() -> None:
    rmap = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    pooled = downsize(rmap, 32)
    expected = rmap.reshape(32, 2, 32, 2).sum(axis=(1, 3))
    np.testing.assert_allclose(pooled, expected, rtol=1e-6)
    odd = np.random.default_rng(0).normal(size=(50, 70)).astype(np.float32)
    assert downsize(odd, 32).sum() == pytest.approx(odd.sum(), abs=1e-3)


def test_normalise_divides_by_total_abs() -> None:
    flat = normalise(np.array([[2.0, -2.0], [0.0, 4.0]], dtype=np.float32))
    np.testing.assert_allclose(flat, [0.25, -0.25, 0.0, 0.5])
    assert not normalise(np.zeros((2, 2), dtype=np.float32)).any()


def test_load_map_sums_channels(tmp_path: Path) -> None:
    array = np.random.default_rng(1).normal(size=(3, 5, 6)).astype(np.float32)
    np.save(tmp_path / "a.npy", array)
    np.testing.assert_allclose(load_map(tmp_path / "a.npy"), array.sum(axis=0), rtol=1e-6)
    np.save(tmp_path / "b.npy", np.zeros((2, 2, 2, 2), dtype=np.float32))
    with pytest.raises(MapError, match="shape"):
        load_map(tmp_path / "b.npy")
    with pytest.raises(MapError, match="missing"):
        load_map(tmp_path / "none.npy")
    (tmp_path / "c.npy").write_text("no", encoding="utf-8")
    with pytest.raises(MapError, match="not a NumPy"):
        load_map(tmp_path / "c.npy")


def test_read_report_streams_the_entries_json_would_give(tmp_path: Path) -> None:
    synthetic_run(tmp_path / "run", {"cat": 4, "dog": 3}, failed=2)
    head, entries = read_report(tmp_path / "run" / "report.json")
    whole = json.loads((tmp_path / "run" / "report.json").read_text(encoding="utf-8"))
    assert head["summary"] == whole["summary"] and "images" not in head
    assert list(entries) == whole["images"]
    record = read_run(tmp_path / "run")
    images = [explained_image(e) for e in record.entries()]
    assert [im is None for im in images] == [False] * 7 + [True] * 2
    first = images[0]
    assert first is not None and first.label == "cat" and first.class_index == 0
    assert first.relevance == "data/cat/00000.relevance.npy" and first.crop_box == (0.0, 0.0, 64.0, 64.0)


def test_read_run_refuses_what_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="no such folder"):
        read_run(tmp_path / "nothing")
    with pytest.raises(AuditError, match="not found"):
        read_run(tmp_path)
    (tmp_path / "report.json").write_text("{", encoding="utf-8")
    with pytest.raises(AuditError, match="not valid JSON"):
        read_run(tmp_path)
    (tmp_path / "report.json").write_text('{"kind": "something else"}', encoding="utf-8")
    with pytest.raises(AuditError, match="not an lrp explain report"):
        read_run(tmp_path)


def test_read_report_of_another_layout(tmp_path: Path) -> None:
    """A report not laid out by ReportWriter (one line, e.g. rewritten by jq) is parsed whole."""
    synthetic_run(tmp_path / "run", {"cat": 3})
    path = tmp_path / "run" / "report.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(doc), encoding="utf-8")
    head, entries = read_report(path)
    assert head["summary"] == doc["summary"] and list(entries) == doc["images"]
