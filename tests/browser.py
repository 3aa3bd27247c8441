"""A headless Chromium for the gallery tests, driven by Playwright (Debian's ``chromium``; never
``playwright install``, which downloads a browser of its own).

When Chromium or Playwright is missing the test fails and says how to install them (``make test``
installs Chromium with apt-get when it runs as root); ``LRPCLI_SKIP_BROWSER=1`` skips the browser
checks instead, on purpose and visibly.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
HOW = (
    "install it with `apt-get install chromium` (make test does this when run as root) and "
    "`pip install -e '.[test]'` for Playwright; or set LRPCLI_SKIP_BROWSER=1 to skip the browser checks"
)


def chromium_path() -> str | None:
    """``LRPCLI_CHROMIUM``, else the first of chromium, chromium-browser on the PATH."""
    named = os.environ.get("LRPCLI_CHROMIUM")
    if named:
        return named if Path(named).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def browser() -> Iterator[Any]:
    """A launched headless Chromium (a Playwright ``Browser``)."""
    if os.environ.get("LRPCLI_SKIP_BROWSER") == "1":
        pytest.skip("LRPCLI_SKIP_BROWSER=1: the browser checks were skipped on purpose")
    path = chromium_path()
    if path is None:
        pytest.fail(f"Chromium not found for the gallery's browser test: {HOW}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"Playwright is not installed for the gallery's browser test: {HOW}")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


def open_page(launched: Any, page_file: Path, *, width: int = 1280) -> tuple[Any, list[str]]:
    """``page_file`` opened from ``file://``; the page and a list that collects its console errors,
    uncaught exceptions and failed requests."""
    page = launched.new_page(viewport={"width": width, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.goto(page_file.resolve().as_uri())
    page.wait_for_load_state("load")
    return page, problems
