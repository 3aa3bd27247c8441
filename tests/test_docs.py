"""README.md and docs/*.md: every relative link resolves (file and #anchor, GitHub's heading
slugs), and the screenshots the README shows are real PNGs in docs/."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from PIL import Image

from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```+|~~~+)")


def prose(text: str) -> list[str]:
    """The page's lines with fenced code blocks blanked (line numbers kept)."""
    lines, fence = [], ""
    for line in text.split("\n"):
        m = FENCE.match(line)
        if fence:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = ""
            lines.append("")
        elif m:
            fence = m.group(1)
            lines.append("")
        else:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link text only, no code marks or tags, lower case,
    punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in prose(page.read_text(encoding="utf-8")):
        m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if m:
            s = slug(m.group(2))
            n = seen.get(s, 0)
            seen[s] = n + 1
            found.add(s if n == 0 else f"{s}-{n}")
    return found


def links(page: Path) -> list[tuple[int, str]]:
    out = []
    for number, line in enumerate(prose(page.read_text(encoding="utf-8")), 1):
        line = re.sub(r"`[^`]*`", lambda m: m.group(0) if "](" in m.group(0) else " " * len(m.group(0)), line)
        out += [(number, m.group(1)) for m in LINK.finditer(line) if not re.match(r"^[a-z]+:", m.group(1))]
    return out


def test_slug_follows_github() -> None:
    assert slug("`images[]`: the per-image entries (`--jsonl`)") == "images-the-per-image-entries---jsonl"
    assert slug("Tuning the rules: `lrp tune`") == "tuning-the-rules-lrp-tune"


def test_every_relative_link_resolves() -> None:
    broken, checked = [], 0
    for page in PAGES:
        for number, target in links(page):
            checked += 1
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(ROOT)}:{number}: {target}"
            if not dest.exists() or not dest.is_relative_to(ROOT):
                broken.append(f"missing file  {where}")
            elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
                broken.append(f"missing anchor  {where}")
    assert checked > 50  # the walker finds the links (a check that finds none cannot fail)
    assert not broken, broken


def test_readme_shows_the_overlay_the_whole_photo_and_the_grid() -> None:
    shown = [target for _, target in links(ROOT / "README.md") if target.endswith(".png")]
    for name in ("docs/coffee.overlay.png", "docs/grace_hopper.overlay.png", "docs/chelsea.compare.png"):
        assert name in shown
    for name in shown:
        with Image.open(ROOT / name) as im:
            assert im.format == "PNG" and min(im.size) >= 200
