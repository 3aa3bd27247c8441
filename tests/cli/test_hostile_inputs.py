"""``lrp explain`` over a folder nobody curated (issue #6).

Every awkward file below is generated in a temporary folder; one run over the folder must explain
each good file, record each bad one as an ``error`` entry with a clear reason, go on to the end,
write a valid report and write nothing outside ``--out``. A tiny user model (``model.python``,
16x16 inputs) keeps the run fast.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from conftest import lrp, noise, write_tiny_model

from lrpcli.cli import loading

LONG_NAME = "l" * 240 + ".png"
UNDECODABLE = os.fsdecode(b"bad-\xff-name.png")






def encoded(im: Image.Image, fmt: str, **save: Any) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **save)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_rgb16(width: int, height: int) -> bytes:
    """A 48-bit (16 bits per channel) RGB PNG; Pillow can read but not write these."""
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 65536, (height, width, 3), dtype=np.uint16).astype(">u2")
    raw = b"".join(b"\0" + row.tobytes() for row in pixels)
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b"")


def png_bomb() -> bytes:
    """A valid-looking PNG header claiming 100,000 x 100,000 pixels, with almost no data."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b"")


def exif_jpeg(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(noise(40, 20, seed=orientation), "JPEG", exif=exif)


def make_hostile_folder(folder: Path, outside: Path) -> dict[str, tuple[str, str]]:
    """Write the awkward files; return file name -> (expected status, expected text).

    The text is a fragment of the error (for ``error``) or of a warning (for ``ok``; empty
    when no warning is expected).
    """
    folder.mkdir(parents=True)
    expected: dict[str, tuple[str, str]] = {}

    def put(name: str, data: bytes, status: str, text: str = "") -> None:
        (folder / name).write_bytes(data)
        expected[name] = (status, text)

    jpeg = encoded(noise(64, 48), "JPEG")
    png = encoded(noise(64, 48), "PNG")
    put("zero.png", b"", "error", "empty file (0 bytes)")
    put("truncated.jpg", jpeg[: len(jpeg) // 2], "error", "truncated image file")
    put("truncated.png", png[: len(png) // 2], "error", "truncated image file")
    put("random-bytes.png", np.random.default_rng(5).bytes(3000), "error", "not an image (cannot identify format)")
    put(
        "saved-page.jpg",
        b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>nope</body></html>\n",
        "error",
        "not an image: the file is an HTML page",
    )
    put("bomb.png", png_bomb(), "error", "image is 100000x100000 = 10,000,000,000 pixels, over the limit")

    grey16 = Image.fromarray((np.arange(30 * 20, dtype=np.uint32).reshape(20, 30) * 100).astype(np.uint16))
    put("grey16.png", encoded(grey16, "PNG"), "ok")
    put("rgb16.png", png_rgb16(30, 20), "ok")
    put("cmyk.jpg", encoded(noise(30, 20).convert("CMYK"), "JPEG"), "ok")
    palette = Image.new("P", (30, 20), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.paste(1, (10, 5, 20, 15))
    put("palette-transparent.png", encoded(palette, "PNG", transparency=0), "ok")
    put("la.png", encoded(noise(30, 20).convert("LA"), "PNG"), "ok")
    frames = [noise(24, 16, seed=s) for s in range(3)]
    put("animated.gif", encoded(frames[0], "GIF", save_all=True, append_images=frames[1:]), "ok", "3 frames; only the first")
    put("animated.webp", encoded(frames[0], "WEBP", save_all=True, append_images=frames[1:]), "ok", "3 frames; only the first")
    put("exif6.jpg", exif_jpeg(6), "ok")
    put("exif8.jpg", exif_jpeg(8), "ok")
    put("one-pixel.png", encoded(noise(1, 1), "PNG"), "ok")
    put("wide.png", encoded(noise(10000, 10), "PNG"), "ok")
    put("pages.tif", encoded(frames[0], "TIFF", save_all=True, append_images=frames[1:]), "ok", "3 frames; only the first")

    for name in ("with space.png", "brackets [1] (2).png", "ünïcode 日本.png", "-leading-dash.png", "new\nline.png", LONG_NAME, UNDECODABLE):
        put(name, encoded(noise(20, 16, seed=len(name)), "PNG"), "ok")

    # symbolic links: to a file outside the folder (explained), to a file inside (the same file
    # once), dangling, to itself, and a folder link back to the folder (a loop that must end)
    (outside / "elsewhere.png").write_bytes(encoded(noise(20, 16, seed=9), "PNG"))
    os.symlink(outside / "elsewhere.png", folder / "link-outside.png")
    expected["link-outside.png"] = ("ok", "")
    os.symlink("one-pixel.png", folder / "z-link-inside.png")  # the same file: listed once, first name wins
    os.symlink("missing.png", folder / "dangling.png")
    expected["dangling.png"] = ("error", "broken symbolic link: it points to 'missing.png'")
    os.symlink("self-loop.png", folder / "self-loop.png")
    expected["self-loop.png"] = ("error", "symbolic link loop")
    (folder / "sub").mkdir()
    put("sub/inner.png", encoded(noise(20, 16, seed=3), "PNG"), "ok")
    os.symlink("..", folder / "sub" / "loop", target_is_directory=True)
    os.mkfifo(folder / "fifo.png")  # would block a reader forever
    expected["fifo.png"] = ("error", "not a regular file")

    locked = folder / "locked.png"
    locked.write_bytes(encoded(noise(20, 16, seed=4), "PNG"))
    locked.chmod(0)
    try:
        with open(locked, "rb"):
            readable = True  # root (or CAP_DAC_OVERRIDE) reads it whatever the mode
    except PermissionError:
        readable = False
    expected["locked.png"] = ("ok", "") if readable else ("error", "permission denied")

    put("vanishing.png", encoded(noise(20, 16, seed=6), "PNG"), "error", "file not found")
    return expected


def test_hostile_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = tmp_path / "audit"
    expected = make_hostile_folder(folder, outside)
    config = write_tiny_model(tmp_path / "model", size=16)
    out = tmp_path / "out"

    listed = loading.discover

    def discover_then_delete(*args: Any, **kwargs: Any) -> Any:
        found = listed(*args, **kwargs)
        (folder / "vanishing.png").unlink()  # removed between listing and reading
        return found

    monkeypatch.setattr(loading, "discover", discover_then_delete)
    before = {p for p in tmp_path.rglob("*") if not p.is_symlink()}
    result = lrp("explain", folder, "-c", config, "-o", out, "--allow-python", tmp_path / "model" / "model.py", "-b", "4")
    assert result.exit_code == 1, result.stderr  # some failed, the run went on

    raw = (out / "report.json").read_bytes()
    doc = json.loads(raw.decode("utf-8"))  # valid UTF-8 JSON despite the undecodable name
    entries = doc["images"]
    by_name = {e["input"].split("audit/", 1)[1]: e for e in entries}
    shown = {name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"): v for name, v in expected.items()}
    assert set(by_name) == set(shown), sorted(set(by_name) ^ set(shown))
    assert [e["index"] for e in entries] == list(range(len(entries)))
    for name, (status, text) in shown.items():
        entry = by_name[name]
        assert entry["status"] == status, (name, entry.get("error"))
        if status == "error":
            assert text in entry["error"], (name, entry["error"])
            assert "outputs" not in entry
        else:
            assert entry["error"] is None
            if text:
                assert any(text in w for w in entry["warnings"]), (name, entry["warnings"])
            for rel in entry["outputs"].values():
                if name.startswith("bad-"):  # the report shows the byte as \\xff; the file has it
                    rel = rel.encode().decode("unicode_escape").encode("latin-1").decode("utf-8", "surrogateescape")
                with Image.open(out / rel) as im:  # the full view: the photo's size, long side at most 1024
                    width, height = entry["image"]["width"], entry["image"]["height"]
                    factor = min(1.0, 1024 / max(width, height))
                    assert im.size == (max(1, round(width * factor)), max(1, round(height * factor)))
    assert by_name["exif6.jpg"]["image"] == by_name["exif8.jpg"]["image"] == {"width": 20, "height": 40}
    assert by_name["wide.png"]["image"] == {"width": 10000, "height": 10}
    assert by_name["one-pixel.png"]["image"] == {"width": 1, "height": 1}
    assert by_name["-leading-dash.png"]["outputs"]["heatmap"] == "audit/-leading-dash.heatmap.png"
    assert by_name["brackets [1] (2).png"]["outputs"]["overlay"] == "audit/brackets [1] (2).overlay.png"
    assert by_name["new\nline.png"]["outputs"]["heatmap"] == "audit/new_line.heatmap.png"
    long_out = by_name[LONG_NAME]["outputs"]["overlay"]
    assert len(Path(long_out).name.encode()) < 255 and Path(long_out).name.startswith("l" * 100)
    assert by_name["bad-\\xff-name.png"]["status"] == "ok"

    summary = doc["summary"]
    n_error = sum(1 for s, _ in expected.values() if s == "error")
    assert (summary["inputs"], summary["processed"], summary["failed"]) == (len(expected), len(expected), n_error)
    assert summary["ok"] == len(expected) - n_error and summary["exit_code"] == 1
    assert summary["closure_check"] == "pass"
    assert len(summary["failures"]) == n_error
    for name, (status, _) in shown.items():
        if status == "error":
            assert name in result.stderr or name.startswith("bad-")

    # nothing written outside --out, no temporary files left, outputs mirror the tree
    after = {p for p in tmp_path.rglob("*") if not p.is_symlink()}
    assert all(out in p.parents or p == out for p in after - before), sorted(after - before)
    assert not [p for p in out.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert all(".." not in Path(e["rel"]).parts for e in entries)


def test_paths_with_dot_dot_stay_inside_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``..`` in globbed or piped paths never reaches an output name."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pics" / "a").mkdir(parents=True)
    noise(20, 16).save(tmp_path / "pics" / "top.png")
    noise(20, 16, seed=1).save(tmp_path / "pics" / "a" / "deep.png")
    config = write_tiny_model(tmp_path / "model")
    before = {p for p in tmp_path.rglob("*")}
    result = lrp(
        "explain", "pics/*/../top.png", "-", "-c", config, "-o", "out", "--allow-python", "model/model.py",
        input="pics/a/../a/deep.png\n",
    )
    assert result.exit_code == 0, result.stderr
    doc = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert [e["rel"] for e in doc["images"]] == ["top.png", "deep.png"]
    new = {p for p in tmp_path.rglob("*")} - before
    assert new and all((tmp_path / "out") in p.parents or p == tmp_path / "out" for p in new)
