"""Regenerate the audit's pictures in docs/ (about a minute on two CPU cores; needs the test extra
and Debian's chromium, as the gallery tests do):

    .venv/bin/python docs/audit_pictures.py

* ``docs/gallery.png``: ``lrp explain sample_images --html``'s index.html, in headless Chromium;
* ``docs/audit.sample.png``: ``lrp audit`` of that run (4 photos, 4 classes: nothing to cluster);
* ``docs/audit.shortcut.png`` and ``docs/audit.stripes-v.clusters.png``: the audit of the planted
  watermark of ``tests/shortcut.py`` (the tiny CNN trained as in the known-answer test).

The runs go to ``out/audit-demo`` and ``out/shortcut-demo`` (ignored by git).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from browser import ARGS, chromium_path
from shortcut import make_dataset, train_model

LRP = [sys.executable, "-m", "lrpcli"]


def lrp(*args: str) -> None:
    subprocess.run([*LRP, *args], cwd=ROOT, check=True)


def screenshot(page_file: Path, picture: Path, *, width: int = 1100, height: int | None = None) -> None:
    """A screenshot of ``page_file`` (the whole page, or its first ``height`` pixels)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=ARGS)
        page = browser.new_page(viewport={"width": width, "height": height or 800})
        page.goto(page_file.resolve().as_uri())
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(picture), full_page=height is None)
        browser.close()
    print(f"wrote {picture.relative_to(ROOT)}")


def main() -> None:
    demo = Path("out/audit-demo")
    lrp("explain", "sample_images", "-o", str(demo), "--save-npy", "--html", "--overwrite", "-q")
    lrp("audit", str(demo), "--overwrite")
    screenshot(ROOT / demo / "index.html", ROOT / "docs" / "gallery.png", height=700)
    screenshot(ROOT / demo / "audit" / "index.html", ROOT / "docs" / "audit.sample.png")

    shortcut = Path("out/shortcut-demo")
    shutil.rmtree(ROOT / shortcut, ignore_errors=True)
    names = make_dataset(ROOT / shortcut / "data")
    train_model(ROOT / shortcut / "model", ROOT / shortcut / "data", names)
    model = shortcut / "model"
    lrp("explain", str(shortcut / "data"), "-c", str(model / "shortcut.yaml"), "--allow-python", str(model / "model.py"),
        "-o", str(shortcut / "run"), "--save-npy", "--html", "-q")
    lrp("audit", str(shortcut / "run"))
    screenshot(ROOT / shortcut / "run" / "audit" / "index.html", ROOT / "docs" / "audit.shortcut.png", width=1280)
    shutil.copy(ROOT / shortcut / "run" / "audit" / "maps" / "1-stripes-v.clusters.png", ROOT / "docs" / "audit.stripes-v.clusters.png")
    print("wrote docs/audit.stripes-v.clusters.png")


if __name__ == "__main__":
    main()
