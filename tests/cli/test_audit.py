"""``lrp audit``: usage errors, classes too small to cluster, the JSON outputs, and the known answer:
a tiny CNN trained on a planted watermark shortcut, explained and audited, and the watermark
cluster found (precision and recall at least 0.8) and shown in the gallery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from audit_runs import synthetic_run
from browser import browser, open_page
from conftest import lrp
from shortcut import make_dataset, train_model


@pytest.fixture()
def run(tmp_path: Path) -> tuple[Path, dict[str, set[str]]]:
    folder = tmp_path / "run"
    return folder, synthetic_run(folder, {"cat": 30, "dog": 3}, marked={"cat": 0.4})


def test_clusters_as_json_lines_and_document(run: tuple[Path, dict[str, set[str]]], tmp_path: Path) -> None:
    folder, planted = run
    result = lrp("audit", folder, "--jsonl")
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    doc = json.loads((folder / "audit" / "audit.json").read_text(encoding="utf-8"))
    assert len(lines) == doc["summary"]["clusters"] == 2
    corner = [line for line in lines if line["where"]["top_left"] > 0.5]  # what `jq 'select(...)'` would pick
    assert len(corner) == 1 and set(corner[0]["members"]) == planted["cat"]
    assert "class cat (class 0): 30 images: eigengap suggests 2 strategies" in result.stderr
    assert "skipped dog (class 1): 3 images" in result.stderr and "at least 10 images per class" in result.stderr
    assert (folder / "audit" / "index.html").is_file() and (folder / "audit" / corner[0]["mean_map"]).is_file()
    again = lrp("audit", folder, "--json", "-q", "-o", tmp_path / "second")
    assert again.exit_code == 0 and again.stderr == ""
    assert json.loads(again.stdout) == json.loads((tmp_path / "second" / "audit.json").read_text(encoding="utf-8"))
    assert json.loads(again.stdout)["classes"] == doc["classes"]  # seeded: the same clusters


def test_too_few_images_say_so(tmp_path: Path) -> None:
    synthetic_run(tmp_path / "run", {"cat": 2, "dog": 1})
    result = lrp("audit", tmp_path / "run", "--jsonl")
    assert result.exit_code == 0 and result.stdout == ""
    assert "no class has at least 10 explained images, so nothing was clustered" in result.stderr
    doc = json.loads((tmp_path / "run" / "audit" / "audit.json").read_text(encoding="utf-8"))
    assert [c["status"] for c in doc["classes"]] == ["skipped", "skipped"] and doc["images"][0]["where"]["border"] is not None


def test_an_unreadable_map_is_an_error_the_audit_survives(run: tuple[Path, dict[str, set[str]]]) -> None:
    folder, _ = run
    (folder / "data/cat/00003.relevance.npy").write_text("broken", encoding="utf-8")
    result = lrp("audit", folder, "-q")
    assert result.exit_code == 1
    assert "data/cat/00003.png" in result.stderr and "not a NumPy array file" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--json", "--jsonl"], "--json and --jsonl cannot be combined"),
        (["--clusters", "12"], "--clusters 12 is more than --min-images 10"),
        (["--boxes", "nowhere.csv"], "--boxes nowhere.csv: cannot read it"),
        (["--min-images", "2"], "Invalid value for '--min-images'"),
    ],
)
def test_usage_errors(run: tuple[Path, dict[str, set[str]]], args: list[str], message: str) -> None:
    folder, _ = run
    result = lrp("audit", folder, *args)
    assert result.exit_code == 2 and message in result.stderr
    assert not (folder / "audit").exists()


def test_what_is_not_an_audit_run(tmp_path: Path) -> None:
    result = lrp("audit", tmp_path / "nothing")
    assert result.exit_code == 2 and "no such folder" in result.stderr
    result = lrp("audit", tmp_path)
    assert result.exit_code == 2 and "report.json: not found; give the --out folder of an lrp explain run" in result.stderr
    synthetic_run(tmp_path / "plain", {"cat": 12}, save_npy=False)
    result = lrp("audit", tmp_path / "plain")
    assert result.exit_code == 2 and "explained without --save-npy" in result.stderr and "--save-npy --overwrite" in result.stderr


def test_existing_outputs_need_overwrite(run: tuple[Path, dict[str, set[str]]]) -> None:
    folder, _ = run
    assert lrp("audit", folder, "-q").exit_code == 0
    result = lrp("audit", folder, "-q")
    assert result.exit_code == 2 and "already exists; pass --overwrite" in result.stderr
    assert lrp("audit", folder, "-q", "--overwrite").exit_code == 0


def test_planted_watermark_is_found_and_shown(tmp_path: Path) -> None:
    """The known answer: the cluster of the class the watermark was planted in with the most
    top-left relevance holds the watermarked images (precision and recall at least 0.8)."""
    names = make_dataset(tmp_path / "data")
    assert train_model(tmp_path / "m", tmp_path / "data", names) >= 0.95
    explained = lrp(
        "explain", tmp_path / "data", "-c", tmp_path / "m" / "shortcut.yaml", "--allow-python", tmp_path / "m" / "model.py",
        "-o", tmp_path / "run", "--save-npy", "--html", "-q",
    )
    assert explained.exit_code == 0, explained.stderr
    result = lrp("audit", tmp_path / "run", "--jsonl", "-q")
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    planted = {(tmp_path / "data" / n).as_posix() for n in names["w"]}
    stripes_v = [line for line in lines if line["class"]["label"] == "stripes-v"]
    assert stripes_v and stripes_v[0]["suggested_clusters"] >= 2
    found = max(stripes_v, key=lambda line: line["where"]["top_left"])
    members = set(found["members"])
    precision = len(members & planted) / len(members)
    recall = len(members & planted) / len(planted)
    assert precision >= 0.8 and recall >= 0.8, (precision, recall, found["size"], len(planted))
    assert found["where"]["top_left"] > 0.5 and found["where"]["border"] > 0.4
    with browser() as chromium:
        page, problems = open_page(chromium, tmp_path / "run" / "audit" / "index.html")
        page.select_option("#class", "stripes-v")
        assert page.locator("section.cls").count() == 1
        hot = page.locator('section.cls[data-class="stripes-v"] .cluster.hot')
        assert hot.count() == 1 and hot.get_attribute("data-cluster") == str(found["cluster"])
        shown = hot.locator(".protos a").evaluate_all("links => links.map(a => a.title)")
        assert shown and set(shown) <= planted
        assert problems == []
