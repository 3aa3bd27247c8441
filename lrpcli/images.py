"""Image input pipeline: find input files, load them robustly, preprocess them.

This module knows nothing about LRP. It turns command-line path arguments into
a list of :class:`ImageInput` (:func:`discover`), decodes one file into an RGB
:class:`PIL.Image.Image` (:func:`load_image`), and turns that into a normalised
model input tensor plus the matching RGB crop used for overlays
(:func:`preprocess`).
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import re
import stat
import struct
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import BinaryIO, TextIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "ImageInput",
    "ImageLoadError",
    "InputError",
    "LoadedImage",
    "Preprocess",
    "discover",
    "is_image_path",
    "load_image",
    "pixel_bounds",
    "preprocess",
]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
"""Lower-case file suffixes (with the dot) picked up when scanning folders and globs."""

DEFAULT_MAX_PIXELS: int = 89_478_485
"""Default decompression-bomb limit in pixels (Pillow's own default, 1 GiB / 4 / 3)."""

_MAGIC = re.compile(r"[*?\[]")
_MAX_STEM_BYTES = 180  # + ".overlay.png" and the atomic write's ".NAME.<12 hex>.tmp" < 255
_BAD_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f/\\]")


class InputError(ValueError):
    """An input argument names nothing usable (missing path, glob matching nothing, ...)."""


@dataclass(frozen=True)
class ImageInput:
    """One input file.

    ``path`` is where to read it; ``rel`` is a relative path (never absolute, never
    containing ``..``) under which its outputs mirror the input tree.
    """

    path: Path
    rel: Path


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """True if the file name ends in one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


# --------------------------------------------------------------------------- discovery


def _has_magic(text: str) -> bool:
    return _MAGIC.search(text) is not None


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _clean_component(name: str) -> str:
    """Make one path component a valid, harmless file name (only if needed)."""
    cleaned = _BAD_NAME_CHARS.sub("_", name)
    if cleaned in ("", ".", ".."):
        cleaned = "_"
    return cleaned


def _short_name(name: str) -> str:
    """``name``, or (if its encoded stem is longer than :data:`_MAX_STEM_BYTES`) its stem cut
    short plus ``~`` and 8 hex digits of a hash of the full name, so that output and temporary
    file names built from it stay under the usual 255-byte file-name limit."""
    stem, suffix = os.path.splitext(name)
    if len(os.fsencode(stem)) <= _MAX_STEM_BYTES:
        return name
    tag = "~" + hashlib.sha256(os.fsencode(name)).hexdigest()[:8]
    while stem and len(os.fsencode(stem + tag)) > _MAX_STEM_BYTES:
        stem = stem[:-1]
    return stem + tag + suffix


def _safe_rel(parts: Sequence[str], fallback: str) -> Path:
    """Join ``parts`` into a relative path without ``.``/``..``/empty components; a long
    file name is shortened (:func:`_short_name`)."""
    stack: list[str] = []
    for part in parts:
        if part in ("", "."):
            continue
        if part == "..":
            if stack:
                stack.pop()
            continue
        stack.append(_clean_component(part))
    if not stack:
        stack = [_clean_component(fallback)]
    stack[-1] = _short_name(stack[-1])
    return Path(*stack)


def _dir_name(directory: str) -> str:
    """The name of a directory argument, resolving ``.``/``..``/trailing slashes."""
    return Path(os.path.abspath(directory)).name


def _scan_dir(directory: str) -> Iterator[tuple[tuple[str, ...], str]]:
    """Yield ``(relative parts, path)`` of image files under ``directory``, sorted.

    Hidden entries (names starting with ``.``) are skipped. Symlinks are followed,
    but every real directory is entered at most once, so symlink loops terminate.
    Broken or looping file symlinks and other non-regular files with an image extension
    are listed too, so that loading reports them instead of skipping them silently.
    """
    found: list[tuple[tuple[str, ...], str]] = []
    seen_dirs: set[tuple[int, int]] = set()
    for root, dirs, files in os.walk(directory, followlinks=True):
        try:
            st = os.stat(root)
        except OSError:
            dirs[:] = []
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            dirs[:] = []
            continue
        seen_dirs.add(key)
        dirs[:] = sorted(d for d in dirs if not _is_hidden(d))
        rel_root = os.path.relpath(root, directory)
        prefix = () if rel_root == os.curdir else tuple(PurePath(rel_root).parts)
        for name in files:
            if _is_hidden(name) or not is_image_path(name):
                continue
            found.append((prefix + (name,), os.path.join(root, name)))
    found.sort(key=lambda item: item[0])
    return iter(found)


def _glob_expand(
    base: str, parts: tuple[str, ...], done: tuple[str, ...], seen: set[tuple[int, int, int]]
) -> Iterator[tuple[str, ...]]:
    """Yield the components (relative to the glob base) of paths matching ``parts``.

    Like :func:`glob.glob` with ``recursive=True`` (``*``/``?``/``[...]`` never match a
    leading dot unless the pattern has one, ``**`` matches zero or more directories),
    but ``**`` enters every real directory once, so symlink loops cannot recurse forever.
    """
    here = os.path.join(base, *done) if done else base
    if not parts:
        yield done
        return
    head, rest = parts[0], parts[1:]
    if head == "**":
        try:
            st = os.stat(here)
        except OSError:
            return
        key = (st.st_dev, st.st_ino, len(parts))
        if key in seen:
            return
        seen.add(key)
        yield from _glob_expand(base, rest, done, seen)
        for name in _sorted_listdir(here):
            if not _is_hidden(name) and os.path.isdir(os.path.join(here, name)):
                yield from _glob_expand(base, parts, done + (name,), seen)
        return
    if not _has_magic(head):
        target = os.path.join(here, head)
        if rest:
            if os.path.isdir(target):
                yield from _glob_expand(base, rest, done + (head,), seen)
        elif os.path.lexists(target):
            yield done + (head,)
        return
    for name in _sorted_listdir(here):
        if _is_hidden(name) and not head.startswith("."):
            continue
        if not fnmatch.fnmatch(name, head):
            continue
        if rest:
            if os.path.isdir(os.path.join(here, name)):
                yield from _glob_expand(base, rest, done + (name,), seen)
        else:
            yield done + (name,)


def _sorted_listdir(directory: str) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except OSError:
        return []


def _expand_glob(pattern: str) -> list[tuple[Path, tuple[str, ...]]]:
    """Expand a glob pattern into ``(path, parts relative to its non-magic prefix)``.

    Directories matched by the pattern are scanned recursively for images; files
    matched by the pattern are kept only if they have an image extension.
    Raises :class:`InputError` if nothing usable matches.
    """
    all_parts = PurePath(pattern).parts
    k = next(i for i, part in enumerate(all_parts) if _has_magic(part))
    base = os.path.join(*all_parts[:k]) if k else os.curdir
    matches = list(_glob_expand(base, tuple(all_parts[k:]), (), set()))
    results: list[tuple[Path, tuple[str, ...]]] = []
    skipped = 0
    for comps in matches:
        full = os.path.join(base, *comps) if k else os.path.join(*comps)
        if os.path.isdir(full):
            for sub_parts, sub_path in _scan_dir(full):
                results.append((Path(sub_path), comps + sub_parts))
        elif os.path.isfile(full) and is_image_path(full):
            results.append((Path(full), comps))
        else:
            skipped += 1
    if not results:
        if skipped:
            raise InputError(
                f"the pattern {pattern!r} matched {skipped} path(s) but no image file "
                f"(image extensions: {', '.join(sorted(IMAGE_EXTENSIONS))}); "
                "name such files explicitly to load them anyway"
            )
        raise InputError(
            f"no files match the pattern {pattern!r}; check the spelling and the folder "
            "it starts from (patterns are matched relative to the current directory)"
        )
    return results


def _read_stdin_paths(stdin: TextIO | BinaryIO | None, null: bool) -> list[str]:
    """Read path names from ``stdin``: one per line, or NUL-separated if ``null``."""
    if stdin is None:
        stdin = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else sys.stdin
    data = stdin.read()
    text = os.fsdecode(data) if isinstance(data, bytes) else data
    if null:
        items = text.split("\0")
    else:
        items = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    return [item for item in items if item.strip()]


def discover(
    paths: Sequence[str],
    *,
    stdin: TextIO | BinaryIO | None = None,
    null: bool = False,
) -> list[ImageInput]:
    """Turn path arguments into a de-duplicated, ordered list of :class:`ImageInput`.

    Each entry of ``paths`` is a file (kept whatever its extension; ``rel`` is its
    name), a directory (scanned recursively for image extensions, sorted, hidden
    entries skipped; ``rel`` is prefixed by the directory's name), a glob pattern
    (``*``, ``?``, ``[...]``, ``**``; ``rel`` is relative to the pattern's non-magic
    prefix), or ``-``: read literal paths (files or directories, no glob expansion)
    from ``stdin`` (default: ``sys.stdin``), one per line or NUL-separated with
    ``null=True``; blank entries are ignored.

    The same file reached twice (also through a symlink) is kept once, at its first
    position. Inputs whose ``rel`` would clash (same folder and same name up to the
    extension, compared case-insensitively) get ``-2``, ``-3``, ... appended to the
    later one's stem, so outputs named after ``rel`` never overwrite each other.

    Raises :class:`InputError` for a path that does not exist and is not a glob
    pattern matching any image.
    """
    raw: list[tuple[Path, Path]] = []
    stdin_read = False
    for entry in paths:
        if entry == "-":
            if stdin_read:
                continue
            stdin_read = True
            for line in _read_stdin_paths(stdin, null):
                raw.extend(_resolve_entry(line, allow_glob=False, origin="standard input"))
        else:
            raw.extend(_resolve_entry(entry, allow_glob=True, origin=None))

    result: list[ImageInput] = []
    seen_files: set[str] = set()
    used: set[tuple[str, str]] = set()
    for path, rel in raw:
        real = os.path.normcase(os.path.realpath(path))
        if real in seen_files:
            continue
        seen_files.add(real)
        result.append(ImageInput(path=path, rel=_unique_rel(rel, used)))
    return result


def _rel_key(rel: Path) -> tuple[str, str]:
    return (rel.parent.as_posix().casefold(), rel.stem.casefold())


def _unique_rel(rel: Path, used: set[tuple[str, str]]) -> Path:
    """Return ``rel``, or ``rel`` with ``-N`` added to its stem, unused so far; mark it used."""
    candidate = rel
    n = 1
    while _rel_key(candidate) in used:
        n += 1
        candidate = rel.with_name(f"{rel.stem}-{n}{rel.suffix}")
    used.add(_rel_key(candidate))
    return candidate


def _resolve_entry(entry: str, *, allow_glob: bool, origin: str | None) -> list[tuple[Path, Path]]:
    """Resolve one argument into ``(path, rel)`` pairs."""
    where = f" (read from {origin})" if origin else ""
    if not entry:
        raise InputError(f"empty input path{where}; give a file, folder or glob pattern")
    if os.path.isdir(entry):
        name = _dir_name(entry)
        prefix = (name,) if name else ()
        return [
            (Path(path), _safe_rel(prefix + parts, parts[-1])) for parts, path in _scan_dir(entry)
        ]
    if os.path.exists(entry):
        st = os.stat(entry)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{entry!r}{where} is not a regular file or folder")
        name = Path(entry).name
        return [(Path(entry), _safe_rel((name,), name or "image"))]
    if allow_glob and _has_magic(entry):
        return [(path, _safe_rel(parts, path.name)) for path, parts in _expand_glob(entry)]
    if os.path.lexists(entry):
        raise InputError(f"{entry!r}{where} is a broken symbolic link; fix or remove it")
    hint = "check the spelling" if origin else "check the spelling, or quote glob patterns"
    raise InputError(f"no such file or folder: {entry!r}{where}; {hint}")


# --------------------------------------------------------------------------- loading


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
        "if you trust this file, raise the pixel limit (max_pixels)",
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


# --------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to ``resize``, centre-crop ``crop`` x ``crop``,
    scale to [0, 1], then normalise each RGB channel as ``(x - mean) / std``."""

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        if self.resize < 1 or self.crop < 1:
            raise ValueError(f"resize and crop must be positive, got {self.resize}, {self.crop}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("mean and std need exactly 3 values (R, G, B)")
        if any(s == 0 for s in self.std):
            raise ValueError(f"std values must be non-zero, got {self.std}")


def _resized_size(width: int, height: int, short: int) -> tuple[int, int]:
    """Output (width, height) with the shorter side = ``short`` (torchvision's rule)."""
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def preprocess(image: Image.Image, pp: Preprocess) -> tuple[torch.Tensor, np.ndarray]:
    """Prepare ``image`` for a model.

    Same result as ``torchvision.transforms`` ``Resize(pp.resize)`` (bilinear,
    antialiased), ``CenterCrop(pp.crop)`` (zero-padded if the crop is larger),
    ``ToTensor()`` and ``Normalize(pp.mean, pp.std)``.

    Returns the float32 tensor ``(3, crop, crop)`` and the cropped RGB ``uint8``
    array ``(crop, crop, 3)`` it was computed from (for overlays).
    """
    if image.mode != "RGB":
        image = image.convert("RGB")
    width, height = image.size
    new_w, new_h = _resized_size(width, height, pp.resize)
    crop = pp.crop
    if crop <= new_w and crop <= new_h and new_w * new_h > 4 * crop * crop:
        # Very elongated images (10000x10 → 224000x224): resample only the part the centre
        # crop keeps. Pillow's filter still reads the pixels around the box, so this matches
        # resize-then-crop up to rounding (some pixels differ by one level: the filter's
        # positions are computed from the box), without building the huge intermediate image.
        top = int(round((new_h - crop) / 2.0))
        left = int(round((new_w - crop) / 2.0))
        sx, sy = width / new_w, height / new_h
        box = (left * sx, top * sy, (left + crop) * sx, (top + crop) * sy)
        part = image.resize((crop, crop), Image.Resampling.BILINEAR, box=box)
        cropped = np.ascontiguousarray(np.asarray(part))
        return _normalise(cropped, pp), cropped
    resized = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    array = np.asarray(resized)
    if crop > new_w or crop > new_h:
        pad_left = (crop - new_w) // 2 if crop > new_w else 0
        pad_top = (crop - new_h) // 2 if crop > new_h else 0
        pad_right = (crop - new_w + 1) // 2 if crop > new_w else 0
        pad_bottom = (crop - new_h + 1) // 2 if crop > new_h else 0
        array = np.pad(array, ((pad_top, pad_bottom), (pad_left, pad_right), (0, 0)))
    h, w = array.shape[:2]
    top = int(round((h - crop) / 2.0))
    left = int(round((w - crop) / 2.0))
    cropped = np.ascontiguousarray(array[top : top + crop, left : left + crop])
    return _normalise(cropped, pp), cropped


def _normalise(cropped: np.ndarray, pp: Preprocess) -> torch.Tensor:
    """``(H, W, 3)`` uint8 → normalised float32 ``(3, H, W)``: ``(x / 255 − mean) / std``.

    In NumPy, not torch: loader threads that ran torch operations would each start an OpenMP
    thread team, whose spinning threads then take CPU from the explanation (measured: the
    engine ran 30 % slower next to them). The float32 operations are the same, so is the result.
    """
    array = np.ascontiguousarray(cropped.transpose(2, 0, 1), dtype=np.float32)
    array /= np.float32(255)
    array -= np.asarray(pp.mean, dtype=np.float32).reshape(3, 1, 1)
    array /= np.asarray(pp.std, dtype=np.float32).reshape(3, 1, 1)
    return torch.from_numpy(array)


def pixel_bounds(pp: Preprocess) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (low, high) of normalised inputs for pixels in [0, 1], shaped (1, 3, 1, 1).

    ``low = (0 - mean) / std`` and ``high = (1 - mean) / std`` (float32), e.g. the
    bounds of the z^B rule for the input layer.
    """
    mean = torch.tensor(pp.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(pp.std, dtype=torch.float32).view(1, 3, 1, 1)
    return (0 - mean) / std, (1 - mean) / std
