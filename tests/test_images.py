"""Tests for lrpcli.images: discovery, robust loading, preprocessing (generated data only)."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from lrpcli.images import (
    IMAGE_EXTENSIONS,
    ImageInput,
    ImageLoadError,
    InputError,
    Preprocess,
    discover,
    is_image_path,
    load_image,
    pixel_bounds,
    preprocess,
)

IMAGENET = Preprocess(resize=256, crop=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def _save(path: Path, image: Image.Image, **kwargs: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def _rgb(width: int = 16, height: int = 12, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _rels(items: list[ImageInput]) -> list[str]:
    return [item.rel.as_posix() for item in items]


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """photos/{a.jpg, b.PNG, notes.txt, .hidden.png, sub/c.png, sub/deeper/d.webp}."""
    photos = tmp_path / "photos"
    _save(photos / "a.jpg", _rgb())
    _save(photos / "b.PNG", _rgb())
    (photos / "notes.txt").write_text("not an image")
    _save(photos / ".hidden.png", _rgb())
    _save(photos / "sub" / "c.png", _rgb())
    _save(photos / "sub" / "deeper" / "d.webp", _rgb())
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
    one = _save(tmp_path / "one" / "x.png", _rgb())
    two = _save(tmp_path / "two" / "x.png", _rgb())
    three = _save(tmp_path / "two" / "X.jpg", _rgb())  # same stem: outputs would clash
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
    _rgb(64, 48).save(buffer, fmt)
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
    source = _rgb(20, 10)
    loaded = load_image(_save(tmp_path / "a.png", source))
    assert loaded.image.mode == "RGB" and loaded.warnings == []
    np.testing.assert_array_equal(np.asarray(loaded.image), np.asarray(source))


def test_16bit_greyscale_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 32768, 65535, 257]], dtype=np.uint16)
    path = _save(tmp_path / "g16.png", Image.fromarray(values))
    assert Image.open(path).mode.startswith("I")
    out = np.asarray(load_image(path).image)
    assert out.shape == (1, 4, 3)
    assert list(out[0, :, 0]) == [0, 128, 255, 1]
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_float_greyscale(tmp_path: Path) -> None:
    values = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    path = _save(tmp_path / "f.tiff", Image.fromarray(values))
    out = np.asarray(load_image(path).image)
    assert list(out[0, :, 0]) == [0, 128, 255]


def test_palette_with_transparency_on_white(tmp_path: Path) -> None:
    image = Image.new("P", (4, 2), 0)
    image.putpalette([0, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    image.putpixel((1, 0), 1)
    path = _save(tmp_path / "p.png", image, transparency=0)
    out = np.asarray(load_image(path).image)
    assert tuple(out[0, 0]) == (255, 255, 255)  # transparent black -> white background
    assert tuple(out[0, 1]) == (0, 255, 0)


def test_la_and_rgba_composited_on_white(tmp_path: Path) -> None:
    la = Image.new("LA", (2, 1))
    la.putpixel((0, 0), (10, 0))
    la.putpixel((1, 0), (10, 255))
    out = np.asarray(load_image(_save(tmp_path / "la.png", la)).image)
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[0, 1]) == (10, 10, 10)

    rgba = Image.new("RGBA", (3, 1))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    rgba.putpixel((1, 0), (255, 0, 0, 128))
    rgba.putpixel((2, 0), (0, 0, 255, 0))
    out = np.asarray(load_image(_save(tmp_path / "rgba.png", rgba)).image).astype(int)
    assert tuple(out[0, 0]) == (255, 0, 0)
    assert out[0, 1, 0] == 255 and abs(out[0, 1, 1] - 127) <= 1 and abs(out[0, 1, 2] - 127) <= 1
    assert tuple(out[0, 2]) == (255, 255, 255)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = _save(tmp_path / "cmyk.jpg", Image.new("CMYK", (8, 8), (0, 255, 255, 0)), quality=95)
    assert Image.open(path).mode == "CMYK"
    out = np.asarray(load_image(path).image).astype(int)
    assert out.shape == (8, 8, 3)
    assert (out[..., 0] > 230).all() and (out[..., 1] < 30).all() and (out[..., 2] < 30).all()


def test_exif_orientation_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    path = _save(tmp_path / "rot.jpg", _rgb(40, 20), exif=exif)
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
    with pytest.raises(ImageLoadError, match="limit of 100"):
        load_image(path, max_pixels=100)


def test_pixel_limit_is_ours_not_pillows(tmp_path: Path) -> None:
    path = _save(tmp_path / "small.png", _rgb(20, 10))
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


# --------------------------------------------------------------------------- preprocessing


@pytest.mark.parametrize(
    ("size", "pp"),
    [
        ((300, 200), IMAGENET),
        ((211, 389), IMAGENET),
        ((256, 256), IMAGENET),
        ((50, 40), Preprocess(resize=32, crop=40, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.125))),
    ],
)
def test_preprocess_matches_torchvision(size: tuple[int, int], pp: Preprocess) -> None:
    from torchvision import transforms  # type: ignore[import-untyped]

    image = _rgb(*size, seed=size[0])
    reference = transforms.Compose(
        [
            transforms.Resize(pp.resize),
            transforms.CenterCrop(pp.crop),
            transforms.ToTensor(),
            transforms.Normalize(pp.mean, pp.std),
        ]
    )(image)
    tensor, crop = preprocess(image, pp)
    assert tensor.dtype == torch.float32 and tensor.shape == (3, pp.crop, pp.crop)
    assert torch.allclose(tensor, reference, atol=1e-6, rtol=0)
    assert crop.dtype == np.uint8 and crop.shape == (pp.crop, pp.crop, 3)
    mean = np.array(pp.mean, dtype=np.float32)
    std = np.array(pp.std, dtype=np.float32)
    back = ((tensor.permute(1, 2, 0).numpy() * std + mean) * 255).round()
    np.testing.assert_array_equal(back.astype(np.uint8), crop)


def test_preprocess_converts_non_rgb() -> None:
    tensor, crop = preprocess(Image.new("L", (30, 20), 255), IMAGENET)
    assert crop.shape == (224, 224, 3) and (crop == 255).all()
    assert tensor.shape == (3, 224, 224)


def test_pixel_bounds() -> None:
    low, high = pixel_bounds(IMAGENET)
    assert low.shape == high.shape == (1, 3, 1, 1)
    mean = torch.tensor(IMAGENET.mean).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET.std).view(1, 3, 1, 1)
    assert torch.allclose(low, -mean / std) and torch.allclose(high, (1 - mean) / std)
    assert low[0, 0, 0, 0].item() == pytest.approx(-0.485 / 0.229)
    assert high[0, 2, 0, 0].item() == pytest.approx((1 - 0.406) / 0.225)
    black, _ = preprocess(Image.new("RGB", (8, 8), (0, 0, 0)), IMAGENET)
    white, _ = preprocess(Image.new("RGB", (8, 8), (255, 255, 255)), IMAGENET)
    assert torch.allclose(black[:, :1, :1], low[0], atol=1e-6)
    assert torch.allclose(white[:, :1, :1], high[0], atol=1e-6)


def test_preprocess_validates() -> None:
    with pytest.raises(ValueError, match="std"):
        Preprocess(resize=8, crop=8, mean=(0, 0, 0), std=(1, 0, 1))


def test_warnings_stay_with_their_image_across_loader_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loader threads decode at the same time: each image keeps its own warnings, and the
    process's warning machinery is left as it was."""
    import threading
    import time
    import warnings

    from lrpcli import images

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


def test_preprocess_of_a_very_elongated_image_matches_torchvision_up_to_rounding() -> None:
    """The fast path for images far wider than tall resamples only the cropped box."""
    from torchvision import transforms  # type: ignore[import-untyped]

    image = _rgb(3000, 40, seed=7)  # resized to 19200x256: the box path
    reference = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.PILToTensor()])(image)
    tensor, crop = preprocess(image, IMAGENET)
    diff = np.abs(crop.astype(int) - reference.permute(1, 2, 0).numpy().astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.05
    assert tensor.shape == (3, 224, 224)
