"""lrpcli.audit.gallery: ``lrp explain --html`` writes index.html, a page that loads from file:// in
a real headless Chromium without console errors, whose filters and sorting work, and whose data
cannot break out of its script element."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser import browser, open_page
from conftest import lrp, noise_file, report, write_tiny_model
from PIL import Image

from lrpcli.audit.gallery import GALLERY_NAME, explain_gallery
from lrpcli.audit.maps import read_run

ODD = "a </script> #1 & b.png"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny-model run over 5 images (one not an image, one with an awkward name) with --html."""
    root = tmp_path_factory.mktemp("gallery")
    config = write_tiny_model(root / "m", size=32)
    for i in range(3):
        noise_file(root / "imgs" / f"n{i}.png", size=(48, 40), seed=i)
    noise_file(root / "imgs" / ODD, size=(40, 48), seed=7)
    (root / "imgs" / "broken.png").write_text("not an image", encoding="utf-8")
    out = root / "out"
    result = lrp("explain", root / "imgs", "-c", config, "--allow-python", root / "m" / "model.py", "-o", out, "--html")
    assert result.exit_code == 1, result.stderr  # the broken file
    assert f"gallery {out / GALLERY_NAME}" in result.stderr
    return out


def page_data(html: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.DOTALL)
    assert found is not None
    return json.loads(found.group(1))


def test_the_page_holds_every_entry_safely(run: Path) -> None:
    html = (run / GALLERY_NAME).read_text(encoding="utf-8")
    assert html.count("</script>") == 2 and "<script" not in html.split('id="data">', 1)[1].split("</script>", 1)[0]
    assert "http://" not in html and "https://" not in html  # no external assets
    data = page_data(html)
    doc = report(run)
    assert [row["name"] for row in data["images"]] == [entry["input"] for entry in doc["images"]]
    odd = next(row for row in data["images"] if row["name"].endswith(ODD))
    assert odd["status"] == "ok" and "%20%23" in odd["over"] and "%3C/script%3E" in odd["over"]
    assert (run / odd["over"].replace("%20", " ").replace("%23", "#").replace("%3C", "<").replace("%3E", ">").replace("%26", "&")).is_file()
    broken = next(row for row in data["images"] if row["status"] == "error")
    assert broken["heat"] is None and broken["img"] is None and broken["error"]
    assert explain_gallery(read_run(run)) == html


def test_the_gallery_in_a_browser(run: Path, tmp_path: Path) -> None:
    doc = report(run)
    ok = [e for e in doc["images"] if e["status"] == "ok"]
    with browser() as chromium:
        page, problems = open_page(chromium, run / GALLERY_NAME)
        assert page.inner_text("#count").startswith("5 of 5 images")
        assert page.locator("article.card").count() == 5
        widths = page.eval_on_selector_all(".card img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : -1)")
        assert widths and all(w > 0 for w in widths), widths
        page.select_option("#status", "error")
        assert page.locator("article.card").count() == 1
        assert page.get_attribute("article.card", "data-status") == "error"
        page.select_option("#status", "")
        label = ok[0]["target"]["label"]
        page.select_option("#class", label)
        wanted = sum(e["target"]["label"] == label for e in ok)
        assert page.locator("article.card").count() == wanted
        assert set(page.eval_on_selector_all("article.card", "cs => cs.map(c => c.dataset.class)")) == {label}
        page.select_option("#class", "")
        page.select_option("#sort", "share-desc")
        shares = [float(s) for s in page.eval_on_selector_all("article.card", "cs => cs.map(c => c.dataset.share)") if s]
        assert len(shares) == 4 and shares == sorted(shares, reverse=True)
        page.fill("#search", "script")
        assert page.locator("article.card").count() == 1
        shot = tmp_path / "gallery.png"
        page.fill("#search", "")
        page.screenshot(path=str(shot), full_page=True)
        assert problems == []
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.shape[1] == 1280 and pixels.std() > 20  # a page was drawn, not a blank
