"""Decoding one image file robustly into RGB (:func:`load_image`), or saying why it cannot be.

Knows nothing about LRP: decompression-bomb limits, truncated or mislabelled files, every
Pillow colour mode, EXIF orientation, multi-frame files.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lrpcli.io.inputs import IMAGE_EXTENSIONS

__all__ = ["DEFAULT_MAX_PIXELS", "ImageLoadError", "LoadedImage", "load_image"]

DEFAULT_MAX_PIXELS: int = 89_478_485
"""Default decompression-bomb limit in pixels (Pillow's own default, 1 GiB / 4 / 3)."""


class ImageLoadError(Exception):
    """A file could not be decoded as an image; ``reason`` says why (and how to fix it)."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot load {self.path}: {reason}")


@dataclass
class LoadedImage:
    """A decoded image, converted to RGB, plus non-fatal notes about the conversion."""

    image: Image.Image
    warnings: list[str] = field(default_factory=list)


_PIL_LIMIT_LOCK = threading.Lock()


@contextmanager
def _pillow_pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Make Pillow's own decompression-bomb checks (run when opening, and again for
    later frames of GIF/TIFF/...) use ``max_pixels`` instead of its global limit.

    Pillow refuses images over ``2 * MAX_IMAGE_PIXELS`` (and only warns above
    ``MAX_IMAGE_PIXELS``), so the global is set to half our limit for the duration.
    The global is process-wide, so decodes in different threads are serialised.
    """
    with _PIL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None if max_pixels is None else (max_pixels + 1) // 2
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


@contextmanager
def _this_threads_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Record every warning that this thread raises inside the block; warnings raised by other
    threads meanwhile are shown as usual. Enter it with ``_PIL_LIMIT_LOCK`` held."""
    me = threading.get_ident()
    caught: list[warnings.WarningMessage] = []
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        show = warnings.showwarning

        def record(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
            if threading.get_ident() == me:
                caught.append(warnings.WarningMessage(message, category, filename, lineno, file, line))
            else:
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = record
        yield caught


def _open_unchecked(path: Path) -> Image.Image:
    """``Image.open`` without Pillow's size check, so that :func:`load_image` can report
    the declared size itself. Call only inside :func:`_pillow_pixel_limit`."""
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        return Image.open(path)
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _limit_error(path: Path, detail: str, max_pixels: int | None) -> ImageLoadError:
    limit = "Pillow's limit" if max_pixels is None else f"the limit of {max_pixels:,} pixels"
    return ImageLoadError(
        path,
        f"{detail}, over {limit} (decompression-bomb protection); "
        "if you trust this file, raise the pixel limit: --max-pixels N on the command line, "
        "or input: {max_pixels: N} in the config (null: no limit)",
    )


def _decode_error(path: Path, exc: BaseException, max_pixels: int | None) -> ImageLoadError:
    """Translate a decoder exception into an :class:`ImageLoadError`."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, Image.DecompressionBombError):
        return _limit_error(path, f"a frame is too large ({text})", max_pixels)
    if isinstance(exc, UnidentifiedImageError):
        return ImageLoadError(
            path,
            "not an image (cannot identify format); check that the file really is an "
            "image (supported here: " + ", ".join(sorted(IMAGE_EXTENSIONS)) + ")",
        )
    if isinstance(exc, MemoryError):
        return ImageLoadError(path, "not enough memory to decode this image; lower its size")
    if isinstance(exc, (EOFError, struct.error)) or "truncated" in text.lower():
        return ImageLoadError(
            path,
            f"truncated image file: {text}; the file is incomplete (interrupted download "
            "or copy?), re-download or re-export it",
        )
    if isinstance(exc, PermissionError):
        return ImageLoadError(path, "permission denied; check the file's read permissions")
    return ImageLoadError(
        path,
        f"corrupt or unsupported image file ({type(exc).__name__}: {text}); "
        "try re-saving it as PNG or JPEG",
    )


def _to_uint8_gray(array: np.ndarray, warns: list[str], mode: str) -> np.ndarray:
    """Scale a 16-bit, 32-bit integer or float greyscale array to uint8."""
    data = array.astype(np.float64)
    if mode.startswith("I;16") or mode == "I":
        lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
        if lo >= 0 and hi <= 65535:
            scaled = data * (255.0 / 65535.0)
        else:
            warns.append(
                f"{mode} pixel values span {lo:g}..{hi:g}, outside 0..65535; "
                "stretched to 0..255 by their own range"
            )
            scaled = (data - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(data)
    else:  # "F"
        nonfinite = ~np.isfinite(data)
        if nonfinite.any():
            warns.append("float image contains NaN/inf pixels; they are shown as black")
            data = np.where(nonfinite, 0.0, data)
        lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
        if lo >= 0 and hi <= 1:
            scaled = data * 255.0
        elif lo >= 0 and hi <= 255:
            scaled = data
        elif lo >= 0 and hi <= 65535:
            scaled = data * (255.0 / 65535.0)
        else:
            warns.append(
                f"float pixel values span {lo:g}..{hi:g}; stretched to 0..255 by their own range"
            )
            scaled = (data - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(data)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _composite_on_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_rgb(im: Image.Image, path: Path, warns: list[str]) -> Image.Image:
    """Convert any Pillow mode to RGB; transparency is composited on white."""
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        gray = _to_uint8_gray(np.asarray(im), warns, mode)
        return Image.fromarray(gray).convert("RGB")
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode in ("RGBA", "LA", "PA") or ("transparency" in im.info and mode in ("P", "L", "RGB")):
        return _composite_on_white(im.convert("RGBA"))
    if mode in ("RGBa", "La"):  # premultiplied alpha
        return _composite_on_white(im.convert("RGBA"))
    try:
        return im.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageLoadError(
            path, f"unsupported colour mode {mode!r} ({exc}); re-save the image as RGB"
        ) from exc


def load_image(path: Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode ``path`` fully into an RGB image.

    Applies the EXIF orientation; converts greyscale (8/16/32-bit, float), palette,
    CMYK and other modes to RGB (16-bit values scaled from 0..65535, not clipped);
    composites any transparency on white; keeps only the first frame of animated or
    multi-page files (with a warning). Images whose header declares more than
    ``max_pixels`` pixels are refused before decoding (decompression-bomb
    protection; ``None`` disables the check). ICC profiles are ignored, as in the
    usual ``Image.open(...).convert("RGB")`` pipeline.

    Raises :class:`ImageLoadError` for missing, empty, truncated, corrupt, oversized
    or non-image files.
    """
    path = Path(path)
    if max_pixels is not None and max_pixels < 1:
        raise ValueError(
            f"max_pixels must be a positive number of pixels or None, got {max_pixels}"
        )
    st = _stat_for_loading(path)
    if stat.S_ISDIR(st.st_mode):
        raise ImageLoadError(path, "is a folder, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise ImageLoadError(
            path, "not a regular file (a FIFO, socket or device); only image files are read"
        )
    if st.st_size == 0:
        raise ImageLoadError(path, "empty file (0 bytes); re-download or re-export it")

    warns: list[str] = []
    # the lock first: the warning machinery is process-wide too, so loader threads must not
    # save and restore it across each other (their warnings would go to the wrong image, or
    # nowhere)
    with _pillow_pixel_limit(max_pixels), _this_threads_warnings() as caught:
        rgb = _decode(path, max_pixels, warns)
    for w in caught:
        message = str(w.message)
        if issubclass(w.category, Image.DecompressionBombWarning):
            continue  # our own limit is enforced as an error instead
        if message and message not in warns:
            warns.append(message)
    return LoadedImage(image=rgb, warnings=warns)


def _stat_for_loading(path: Path) -> os.stat_result:
    """``os.stat`` of ``path``, or an :class:`ImageLoadError` saying why it cannot be read."""
    try:
        return path.stat()
    except FileNotFoundError:
        if os.path.islink(path):
            target = os.readlink(path)
            raise ImageLoadError(
                path, f"broken symbolic link: it points to {target!r}, which does not exist"
            ) from None
        raise ImageLoadError(
            path, "file not found; check the path (was it removed or renamed after the inputs were listed?)"
        ) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageLoadError(
                path, "symbolic link loop: the link leads back to itself; fix or remove it"
            ) from None
        raise ImageLoadError(path, f"cannot access file ({exc.strerror or exc})") from None


_MARKUP_PREFIXES = (b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml", b"<svg")


def _sniff_markup(path: Path) -> str | None:
    """``"an HTML page"`` / ``"XML or SVG"`` if the file starts like one (a saved web page, a
    download that returned an error page), else ``None``."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        return None
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    for prefix in _MARKUP_PREFIXES:
        if text.startswith(prefix):
            return "XML or SVG" if prefix in (b"<?xml", b"<svg") else "an HTML page"
    return None


def _decode(path: Path, max_pixels: int | None, warns: list[str]) -> Image.Image:
    """Open, check the header size, fully decode frame 0 and convert to RGB."""
    try:
        im = _open_unchecked(path)
    except UnidentifiedImageError as exc:
        markup = _sniff_markup(path)
        if markup is not None:
            raise ImageLoadError(
                path,
                f"not an image: the file is {markup} (text), not pixel data; a saved web page or "
                "a download that returned an error page? fetch the image itself",
            ) from exc
        raise _decode_error(path, exc, max_pixels) from exc
    except Exception as exc:  # OSError, SyntaxError, struct.error, ... from bad headers
        raise _decode_error(path, exc, max_pixels) from exc
    with im:
        width, height = im.size
        if max_pixels is not None and width * height > max_pixels:
            raise _limit_error(
                path, f"image is {width}x{height} = {width * height:,} pixels", max_pixels
            )
        if width < 1 or height < 1:
            raise ImageLoadError(path, f"image has no pixels ({width}x{height})")
        fmt = im.format
        try:
            n_frames = int(getattr(im, "n_frames", 1))
        except Image.DecompressionBombError as exc:
            raise _decode_error(path, exc, max_pixels) from exc
        except Exception:  # a broken later frame must not stop frame 0
            n_frames = 1
            warns.append("could not count the frames of this file; using the first frame")
        try:
            if n_frames > 1:
                im.seek(0)
                warns.append(f"file has {n_frames} frames; only the first frame is used")
            im.load()
        except Exception as exc:
            raise _decode_error(path, exc, max_pixels) from exc
        if fmt == "PNG":
            _verify_png(path, max_pixels)
        try:
            oriented = ImageOps.exif_transpose(im)
        except Exception as exc:
            warns.append(f"ignored unreadable EXIF orientation ({exc})")
            oriented = im
        rgb = _to_rgb(oriented if oriented is not None else im, path, warns)
        if rgb is im:
            rgb = im.copy()  # ``im`` is closed when leaving the ``with`` block
    return rgb


def _verify_png(path: Path, max_pixels: int | None) -> None:
    """Check every PNG chunk CRC up to IEND (``load()`` tolerates a cut-off tail)."""
    try:
        with _open_unchecked(path) as again:
            again.verify()
    except Exception as exc:
        text = str(exc)
        if isinstance(exc, (EOFError, struct.error)) or "truncat" in text.lower():
            eof = EOFError(text or "unexpected end of file")
            raise _decode_error(path, eof, max_pixels) from exc
        raise _decode_error(path, exc, max_pixels) from exc
