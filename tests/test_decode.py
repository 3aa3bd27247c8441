"""Tests for lrpcli.io.decode: robust loading of any image file (generated data only)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import noise, save_image
from lrpcli.io.decode import ImageLoadError, load_image


def _load_error(path: Path) -> str:
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    return str(info.value)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert "empty file" in _load_error(path)


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "fake.png"
    path.write_text("hello, I am not a PNG\n")
    assert "not an image (cannot identify format)" in _load_error(path)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files(tmp_path: Path, fmt: str) -> None:
    buffer = io.BytesIO()
    noise(64, 48).save(buffer, fmt)
    data = buffer.getvalue()
    cut_mid = tmp_path / f"mid.{fmt.lower()}"
    cut_mid.write_bytes(data[: len(data) // 2])
    assert "truncated image file" in _load_error(cut_mid)
    cut_tail = tmp_path / f"tail.{fmt.lower()}"
    cut_tail.write_bytes(data[:-10])  # pixel data (almost) complete, end marker missing
    assert "truncated image file" in _load_error(cut_tail)


def test_missing_file(tmp_path: Path) -> None:
    assert "file not found" in _load_error(tmp_path / "nope.png")


def test_rgb_roundtrip_without_warnings(tmp_path: Path) -> None:
    source = noise(20, 10)
    loaded = load_image(save_image(tmp_path / "a.png", source))
    assert loaded.image.mode == "RGB" and loaded.warnings == []
    np.testing.assert_array_equal(np.asarray(loaded.image), np.asarray(source))


def test_16bit_greyscale_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 32768, 65535, 257]], dtype=np.uint16)
    path = save_image(tmp_path / "g16.png", Image.fromarray(values))
    assert Image.open(path).mode.startswith("I")
    out = np.asarray(load_image(path).image)
    assert out.shape == (1, 4, 3)
    assert list(out[0, :, 0]) == [0, 128, 255, 1]
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_float_greyscale(tmp_path: Path) -> None:
    values = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    path = save_image(tmp_path / "f.tiff", Image.fromarray(values))
    out = np.asarray(load_image(path).image)
    assert list(out[0, :, 0]) == [0, 128, 255]


def test_palette_with_transparency_on_white(tmp_path: Path) -> None:
    image = Image.new("P", (4, 2), 0)
    image.putpalette([0, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    image.putpixel((1, 0), 1)
    path = save_image(tmp_path / "p.png", image, transparency=0)
    out = np.asarray(load_image(path).image)
    assert tuple(out[0, 0]) == (255, 255, 255)  # transparent black -> white background
    assert tuple(out[0, 1]) == (0, 255, 0)


def test_la_and_rgba_composited_on_white(tmp_path: Path) -> None:
    la = Image.new("LA", (2, 1))
    la.putpixel((0, 0), (10, 0))
    la.putpixel((1, 0), (10, 255))
    out = np.asarray(load_image(save_image(tmp_path / "la.png", la)).image)
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[0, 1]) == (10, 10, 10)

    rgba = Image.new("RGBA", (3, 1))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    rgba.putpixel((1, 0), (255, 0, 0, 128))
    rgba.putpixel((2, 0), (0, 0, 255, 0))
    out = np.asarray(load_image(save_image(tmp_path / "rgba.png", rgba)).image).astype(int)
    assert tuple(out[0, 0]) == (255, 0, 0)
    assert out[0, 1, 0] == 255 and abs(out[0, 1, 1] - 127) <= 1 and abs(out[0, 1, 2] - 127) <= 1
    assert tuple(out[0, 2]) == (255, 255, 255)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = save_image(tmp_path / "cmyk.jpg", Image.new("CMYK", (8, 8), (0, 255, 255, 0)), quality=95)
    assert Image.open(path).mode == "CMYK"
    out = np.asarray(load_image(path).image).astype(int)
    assert out.shape == (8, 8, 3)
    assert (out[..., 0] > 230).all() and (out[..., 1] < 30).all() and (out[..., 2] < 30).all()


def test_exif_orientation_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    path = save_image(tmp_path / "rot.jpg", noise(40, 20), exif=exif)
    assert Image.open(path).size == (40, 20)
    assert load_image(path).image.size == (20, 40)


def test_animated_gif_first_frame_with_warning(tmp_path: Path) -> None:
    frames = [
        Image.new("RGB", (6, 6), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))
    ]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    loaded = load_image(path)
    assert tuple(np.asarray(loaded.image)[0, 0]) == (255, 0, 0)
    assert any("3 frames" in w and "first" in w for w in loaded.warnings)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def test_decompression_bomb_header_refused(tmp_path: Path) -> None:
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _png_chunk(b"IEND", b"")
    )
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    assert len(data) < 200
    message = _load_error(path)
    assert "10,000,000,000 pixels" in message and "limit of 89,478,485" in message
    assert "--max-pixels N on the command line, or input: {max_pixels: N} in the config" in message
    with pytest.raises(ImageLoadError, match="limit of 100"):
        load_image(path, max_pixels=100)


def test_pixel_limit_is_ours_not_pillows(tmp_path: Path) -> None:
    path = save_image(tmp_path / "small.png", noise(20, 10))
    with pytest.raises(ImageLoadError, match="over the limit of 199"):
        load_image(path, max_pixels=199)
    assert load_image(path, max_pixels=200).image.size == (20, 10)
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 10  # Pillow's own global limit must not interfere
    try:
        assert load_image(path, max_pixels=None).image.size == (20, 10)
        with pytest.raises(ImageLoadError):
            load_image(path, max_pixels=5)
        assert Image.MAX_IMAGE_PIXELS == 10  # and is restored afterwards
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def test_warnings_stay_with_their_image_across_loader_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loader threads decode at the same time: each image keeps its own warnings, and the
    process's warning machinery is left as it was."""
    import threading
    import time
    import warnings

    from lrpcli.io import decode as images

    real_decode = images._decode

    def noisy_decode(path: Path, max_pixels: int | None, warns: list[str]) -> Image.Image:
        warnings.warn(f"about {path.name}", UserWarning, stacklevel=1)
        time.sleep(0.002)  # let the other thread interleave
        return real_decode(path, max_pixels, warns)

    monkeypatch.setattr(images, "_decode", noisy_decode)
    paths = []
    for i in range(12):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", (8, 8), (i, i, i)).save(path)
        paths.append(path)
    before = warnings.showwarning
    results: dict[str, list[str]] = {}

    def worker(mine: list[Path]) -> None:
        for path in mine:
            results[path.name] = load_image(path).warnings

    threads = [threading.Thread(target=worker, args=(paths[k::3],)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {name: w for name, w in results.items()} == {p.name: [f"about {p.name}"] for p in paths}
    assert warnings.showwarning is before
