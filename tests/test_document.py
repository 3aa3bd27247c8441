"""lrpcli.audit.document: audit.json's schema, one line per cluster, the pictures."""

from __future__ import annotations

import json
from pathlib import Path

from audit_runs import synthetic_run
from PIL import Image

from lrpcli.audit.analyse import AuditSettings, audit_run
from lrpcli.audit.document import (
    AUDIT_KIND,
    AUDIT_SCHEMA_VERSION,
    audit_document,
    class_picture_path,
    cluster_lines,
    where_words,
    write_pictures,
)
from lrpcli.audit.maps import read_run
from lrpcli.audit.where import REGIONS


def test_document_lines_and_pictures(tmp_path: Path) -> None:
    synthetic_run(tmp_path / "run", {"cat": 30, "dog": 4}, marked={"cat": 0.4})
    record = read_run(tmp_path / "run")
    done = audit_run(record, AuditSettings())
    out = tmp_path / "audit"
    write_pictures(done, record, out)
    doc = json.loads(json.dumps(audit_document(done, record, AuditSettings(), started_at="a", finished_at="b", duration_s=1.0)))
    assert (doc["schema_version"], doc["kind"]) == (AUDIT_SCHEMA_VERSION, AUDIT_KIND)
    assert list(doc) == ["schema_version", "kind", "run", "settings", "summary", "classes", "images"]
    assert doc["summary"] == {"images": 34, "not_explained": 0, "no_relevance": 0, "unreadable": [], "classes": 2,
                              "clustered_classes": 1, "skipped_classes": 1, "clusters": 2}
    cat, dog = doc["classes"]
    assert dog["status"] == "skipped" and "--min-images" in dog["reason"] and "clusters" not in dog
    assert cat["status"] == "clustered" and cat["eigengap"]["suggested"] == 2 and len(cat["clusters"]) == 2
    assert sum(k["size"] for k in cat["clusters"]) == 30 and list(cat["clusters"][0]["where"]) == list(REGIONS)
    for k in cat["clusters"]:
        with Image.open(out / k["mean_map"]) as im:
            assert im.size == (160, 160)
    assert (out / class_picture_path(done.classes[0])).is_file()
    assert len(doc["images"]) == 34 and {i["cluster"] for i in doc["images"]} == {0, 1, None}
    lines = cluster_lines(done)
    assert [(line["class"]["label"], line["cluster"]) for line in lines] == [("cat", 0), ("cat", 1)]
    assert lines[1]["members"] == cat["clusters"][1]["members"] and lines[1]["suggested_clusters"] == 2


def test_where_words() -> None:
    shares = {"border": 0.71, "top_left": 0.64, "top_right": 0.1, "bottom_left": 0.2, "bottom_right": 0.06, "outside_box": None}
    assert where_words(shares) == "border 71 %, top-left 64 %"
    assert where_words({**shares, "outside_box": 0.5}).endswith("outside box 50 %")
    assert where_words(dict.fromkeys(REGIONS)) == "no positive relevance"
