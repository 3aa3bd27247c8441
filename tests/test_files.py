"""Tests for lrpcli.io.files: atomic writes, PNG encoding, .npy files."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lrpcli.io import files
from lrpcli.io.files import write_npy, write_png


def test_write_png_atomic_roundtrip(tmp_path: Path) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    target = tmp_path / "out" / "nested" / "heat.png"
    write_png(target, rgb)
    write_png(target, rgb)  # overwrite in place
    np.testing.assert_array_equal(np.asarray(Image.open(target)), rgb)
    assert sorted(p.name for p in target.parent.iterdir()) == ["heat.png"]


@pytest.mark.parametrize("png_filter", ["up", "none"])
@pytest.mark.parametrize("shape", [(7, 9), (7, 9, 3), (7, 9, 4), (1, 5, 3), (6, 1, 3), (224, 224, 3)])
def test_encode_png_decodes_to_the_same_pixels(shape: tuple[int, ...], png_filter: str) -> None:
    rgb = np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)
    image = Image.open(io.BytesIO(files.encode_png(rgb, filter=png_filter)))
    image.load()  # decodes every row: a wrong filter byte or CRC raises here
    channels = shape[2] if len(shape) == 3 else 1
    assert image.mode == {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    np.testing.assert_array_equal(np.asarray(image), rgb)


def test_encode_png_accepts_views_and_rejects_bad_shapes() -> None:
    base = np.random.default_rng(4).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    view = base[::2, ::-1]  # not contiguous
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(files.encode_png(view)))), view)
    for bad in (np.zeros((2, 2, 2), np.uint8), np.zeros((0, 3, 3), np.uint8), np.zeros((2, 2, 3, 1), np.uint8)):
        with pytest.raises(ValueError, match="PNG data"):
            files.encode_png(bad)
    with pytest.raises(ValueError, match="unknown PNG filter 'sub'; use one of none, up"):
        files.encode_png(base, filter="sub")


def test_write_npy_roundtrip(tmp_path: Path) -> None:
    array = np.random.default_rng(2).normal(size=(4, 5)).astype(np.float32)
    target = tmp_path / "r.npy"
    write_npy(target, array)
    np.testing.assert_array_equal(np.load(target), array)
    assert [p.name for p in tmp_path.iterdir()] == ["r.npy"]


def test_failed_write_leaves_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "keep.bin"
    target.write_bytes(b"old")

    def crash(handle: object) -> None:
        handle.write(b"partial")  # type: ignore[attr-defined]
        raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError):
        files.atomic_write(target, crash)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.bin"]
    with pytest.raises(ValueError, match="uint8"):
        write_png(tmp_path / "bad.png", np.zeros((2, 2, 3), dtype=np.float32))
    assert not (tmp_path / "bad.png").exists()


def test_png_text_roundtrip_and_never_blocks(tmp_path: Path) -> None:
    rgb = np.zeros((3, 4, 3), np.uint8)
    marked = tmp_path / "m.png"
    write_png(marked, rgb, text={"Software": "lrpcli 1", "lrpcli:source": "photos/å.jpg"})
    assert files.png_text(marked) == {"Software": "lrpcli 1", "lrpcli:source": "photos/å.jpg"}
    np.testing.assert_array_equal(np.asarray(Image.open(marked)), rgb)  # still a valid PNG
    plain = tmp_path / "p.png"
    Image.fromarray(rgb).save(plain)
    assert files.png_text(plain) == {}
    (tmp_path / "t.png").write_text("not a png", encoding="utf-8")
    assert files.png_text(tmp_path / "t.png") == {}
    os.mkfifo(tmp_path / "fifo.png")  # a plain open() for reading would wait for a writer forever
    assert files.png_text(tmp_path / "fifo.png") == {}
    assert files.png_text(tmp_path / "missing.png") == {}


def test_remove_stale_temporaries_removes_only_what_atomic_write_leaves(tmp_path: Path) -> None:
    from lrpcli.io.files import remove_stale_temporaries

    stale = tmp_path / "a" / ".img.heatmap.png.0123456789ab.tmp"
    stale.parent.mkdir()
    stale.write_bytes(b"half a png")
    keep = [tmp_path / "a" / "img.heatmap.png", tmp_path / ".hidden.tmp", tmp_path / "a" / ".x.png.short.tmp"]
    for path in keep:
        path.write_bytes(b"x")
    write_png(tmp_path / "a" / "new.png", np.zeros((2, 2, 3), dtype=np.uint8))
    assert remove_stale_temporaries(tmp_path) == 1
    assert not stale.exists() and all(p.exists() for p in keep)
