"""Tests for lrpcli.io.inputs: input discovery (generated files only)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from conftest import noise, save_image
from lrpcli.io.inputs import IMAGE_EXTENSIONS, ImageInput, InputError, discover, is_image_path


def _rels(items: list[ImageInput]) -> list[str]:
    return [item.rel.as_posix() for item in items]


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """photos/{a.jpg, b.PNG, notes.txt, .hidden.png, sub/c.png, sub/deeper/d.webp}."""
    photos = tmp_path / "photos"
    save_image(photos / "a.jpg", noise())
    save_image(photos / "b.PNG", noise())
    (photos / "notes.txt").write_text("not an image")
    save_image(photos / ".hidden.png", noise())
    save_image(photos / "sub" / "c.png", noise())
    save_image(photos / "sub" / "deeper" / "d.webp", noise())
    return tmp_path


# --------------------------------------------------------------------------- discovery


def test_extensions_and_is_image_path() -> None:
    assert {".jpg", ".jpeg", ".png", ".tiff", ".pgm"} <= IMAGE_EXTENSIONS
    assert is_image_path("X.JPEG") and is_image_path("a/b.Tif")
    assert not is_image_path("notes.txt")


def test_directory_scan_mirrors_tree(tree: Path) -> None:
    found = discover([str(tree / "photos")])
    assert _rels(found) == [
        "photos/a.jpg",
        "photos/b.PNG",
        "photos/sub/c.png",
        "photos/sub/deeper/d.webp",
    ]
    assert all(item.path.is_file() for item in found)


def test_directory_dot_uses_its_real_name(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree / "photos" / "sub")
    assert _rels(discover(["."])) == ["sub/c.png", "sub/deeper/d.webp"]


def test_explicit_file_rel_is_name_and_unknown_extension_kept(tree: Path) -> None:
    found = discover([str(tree / "photos" / "sub" / "c.png"), str(tree / "photos" / "notes.txt")])
    assert _rels(found) == ["c.png", "notes.txt"]


def test_glob_patterns(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    photos = tree / "photos"
    assert _rels(discover([str(photos / "**" / "*.png")])) == ["sub/c.png"]
    assert _rels(discover([str(photos / "*")])) == [
        "a.jpg",
        "b.PNG",
        "sub/c.png",  # matched directories are scanned
        "sub/deeper/d.webp",
    ]
    assert _rels(discover([str(photos / "?.jpg")])) == ["a.jpg"]
    assert _rels(discover([str(photos / "[ab].*")])) == ["a.jpg", "b.PNG"]
    monkeypatch.chdir(photos / "sub")
    found = discover(["../*.jpg", "**/*.webp"])
    assert _rels(found) == ["a.jpg", "deeper/d.webp"]
    assert all(".." not in item.rel.parts and not item.rel.is_absolute() for item in found)


def test_stdin_lines_and_null(tree: Path) -> None:
    photos = tree / "photos"
    text = f"{photos / 'a.jpg'}\n\n   \n{photos / 'sub'}\r\n"
    assert _rels(discover(["-"], stdin=io.StringIO(text))) == [
        "a.jpg",
        "sub/c.png",
        "sub/deeper/d.webp",
    ]
    data = f"{photos / 'b.PNG'}\0{photos / 'a.jpg'}\0\0".encode()
    assert _rels(discover(["-"], stdin=io.BytesIO(data), null=True)) == ["b.PNG", "a.jpg"]


def test_empty_stdin_says_so(tree: Path) -> None:
    for null in (False, True):
        with pytest.raises(InputError, match="^standard input gave no paths; pipe image paths"):
            discover(["-"], stdin=io.BytesIO(b"\n \n" if not null else b"\0"), null=null)
    # with other paths beside it, an empty standard input is no error
    assert _rels(discover(["-", str(tree / "photos" / "a.jpg")], stdin=io.StringIO(""))) == ["a.jpg"]


def test_stdin_missing_path_is_reported(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope.png.*standard input"):
        discover(["-"], stdin=io.StringIO(str(tmp_path / "nope.png") + "\n"))


def test_missing_path_and_empty_glob_raise(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.jpg")
    with pytest.raises(InputError, match="missing.jpg"):
        discover([missing])
    with pytest.raises(InputError, match=r"no files match.*\*\.gif"):
        discover([str(tmp_path / "*.gif")])
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(InputError, match="no image file"):
        discover([str(tmp_path / "*.txt")])
    assert issubclass(InputError, ValueError)


def test_duplicates_removed_order_kept(tree: Path) -> None:
    photos = tree / "photos"
    a, c = str(photos / "a.jpg"), str(photos / "sub" / "c.png")
    found = discover([c, a, str(photos), a])
    assert [item.path for item in found][:2] == [Path(c), Path(a)]
    assert len({os.path.realpath(item.path) for item in found}) == len(found) == 4


def test_clashing_rels_are_disambiguated(tmp_path: Path) -> None:
    one = save_image(tmp_path / "one" / "x.png", noise())
    two = save_image(tmp_path / "two" / "x.png", noise())
    three = save_image(tmp_path / "two" / "X.jpg", noise())  # same stem: outputs would clash
    found = discover([str(one), str(two), str(three)])
    assert _rels(found) == ["x.png", "x-2.png", "X-3.jpg"]
    assert [item.path for item in found] == [one, two, three]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlink_loop_terminates(tree: Path) -> None:
    photos = tree / "photos"
    try:
        os.symlink(photos, photos / "sub" / "loop", target_is_directory=True)
    except OSError:
        pytest.skip("cannot create symlinks here")
    assert len(discover([str(photos)])) == 4
    assert len(discover([str(photos / "**" / "*.png")])) == 1


# --------------------------------------------------------------------------- loading


# --------------------------------------------------------------------------- preprocessing


