"""Writing output files atomically: any bytes, PNG images (encoded here in NumPy + zlib), ``.npy``;
and reading back the text chunks of a PNG (how our own outputs are recognised).

A reader never sees a partial file: each is filled under a temporary name in the same folder,
fsynced and renamed into place.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

__all__ = [
    "PNG_COMPRESS_LEVEL",
    "atomic_write",
    "encode_png",
    "png_text",
    "remove_stale_temporaries",
    "write_npy",
    "write_png",
]

_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")
"""The name :func:`atomic_write` fills a file under: ``.NAME.<12 hex digits>.tmp``."""


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write a file atomically: ``write`` fills a temporary file in the same folder,
    which is flushed, fsynced and renamed over ``path`` with ``os.replace``.

    Parent folders are created. On any error the temporary file is removed and
    ``path`` is left as it was, so readers never see a partial file.
    """
    path = Path(path)
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = parent / f".{path.name}.{secrets.token_hex(6)}.tmp"  # see _TEMPORARY
        try:
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666
            )
        except FileExistsError:
            continue
        break
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(parent)


def remove_stale_temporaries(folder: Path) -> int:
    """Delete the temporary files a killed writer left under ``folder`` (named as
    :func:`atomic_write` names them); returns how many. Only for a folder no one writes to now."""
    removed = 0
    for here, _, names in os.walk(folder):
        for name in names:
            if _TEMPORARY.match(name):
                try:
                    os.unlink(os.path.join(here, name))
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


def _fsync_dir(directory: Path) -> None:
    """Best effort: persist the rename itself (not possible on every OS)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


PNG_COMPRESS_LEVEL = 1
_PNG_COLOUR_TYPES = {1: 0, 3: 2, 4: 6}  # channels → PNG colour type (grey, RGB, RGBA)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


_PNG_FILTERS = {"none": 0, "up": 2}


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _text_chunk(key: str, value: str) -> bytes:
    """An uncompressed ``iTXt`` chunk (UTF-8 text, so any file name fits)."""
    keyword = key.encode("latin-1")
    if not 1 <= len(keyword) <= 79 or b"\0" in keyword:
        raise ValueError(f"PNG text keyword must be 1-79 Latin-1 characters, got {key!r}")
    return _png_chunk(b"iTXt", keyword + b"\0\0\0\0\0" + value.encode("utf-8", "surrogateescape"))


def encode_png(
    rgb: np.ndarray, level: int = PNG_COMPRESS_LEVEL, *, filter: str = "up", text: dict[str, str] | None = None
) -> bytes:
    """A ``uint8`` image ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` as PNG bytes (8 bits per channel).

    Every row uses one PNG filter: ``"up"`` (the difference to the row above, computed in one
    NumPy pass; at zlib level 1 as small as Pillow's adaptive filtering on overlays, in half
    its time) or ``"none"`` (smaller and faster for heatmaps, whose flat areas compress as they
    are). One zlib stream at ``level``. ``text`` becomes ``iTXt`` chunks before the image data.
    """
    array = np.asarray(rgb)
    if array.dtype != np.uint8:
        raise ValueError(f"PNG data must be uint8, got {array.dtype}; convert with heatmap_rgb()")
    channels = 1 if array.ndim == 2 else array.shape[2] if array.ndim == 3 else 0
    if channels not in _PNG_COLOUR_TYPES or 0 in array.shape:
        raise ValueError(
            f"PNG data must be a non-empty (H, W), (H, W, 3) or (H, W, 4) array, got {array.shape}"
        )
    if filter not in _PNG_FILTERS:
        raise ValueError(f"unknown PNG filter {filter!r}; use one of {', '.join(_PNG_FILTERS)}")
    height, width = array.shape[:2]
    rows = np.ascontiguousarray(array).reshape(height, width * channels)
    raw = np.empty((height, rows.shape[1] + 1), dtype=np.uint8)
    raw[:, 0] = _PNG_FILTERS[filter]
    if filter == "up":
        raw[0, 1:] = rows[0]  # the first row's "above" is zeros
        np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])  # modulo 256, as PNG defines it
    else:
        raw[:, 1:] = rows
    header = struct.pack(">IIBBBBB", width, height, 8, _PNG_COLOUR_TYPES[channels], 0, 0, 0)
    return b"".join(
        (
            _PNG_SIGNATURE,
            _png_chunk(b"IHDR", header),
            *(_text_chunk(k, v) for k, v in (text or {}).items()),
            _png_chunk(b"IDAT", zlib.compress(raw.tobytes(), level)),
            _png_chunk(b"IEND", b""),
        )
    )


def write_png(path: Path, rgb: np.ndarray, *, filter: str = "up", text: dict[str, str] | None = None) -> None:
    """Atomically write a ``uint8`` image as PNG (see :func:`encode_png`).

    ``rgb`` is ``(H, W, 3)`` RGB, ``(H, W, 4)`` RGBA or ``(H, W)`` greyscale.
    """
    data = encode_png(rgb, filter=filter, text=text)
    atomic_write(path, lambda handle: handle.write(data))


def write_npy(path: Path, array: np.ndarray) -> None:
    """Atomically write ``array`` in NumPy ``.npy`` format to exactly ``path`` (no pickles)."""
    data = np.asarray(array)
    atomic_write(path, lambda handle: np.save(handle, data, allow_pickle=False))


def png_text(path: Path, limit: int = 1 << 16) -> dict[str, str]:
    """The ``tEXt``/``iTXt`` (uncompressed) chunks before a PNG's image data, read from at most
    the first ``limit`` bytes; ``{}`` for files that are not PNG or cannot be read, and for
    anything but a regular file (a FIFO named ``x.png`` would block a plain ``open``)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return {}
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return {}
        with os.fdopen(fd, "rb") as handle:
            fd = -1
            data = handle.read(limit)
    except OSError:
        return {}
    finally:
        if fd >= 0:
            os.close(fd)
    if not data.startswith(_PNG_SIGNATURE):
        return {}
    found: dict[str, str] = {}
    at = len(_PNG_SIGNATURE)
    while at + 8 <= len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind = data[at + 4 : at + 8]
        body = data[at + 8 : at + 8 + length]
        if kind in (b"IDAT", b"IEND") or len(body) < length:
            break
        key, sep, rest = body.partition(b"\0")
        if sep and kind == b"tEXt":
            found[key.decode("latin-1")] = rest.decode("latin-1")
        elif sep and kind == b"iTXt" and rest[:1] == b"\0":  # not compressed
            _, _, rest = rest[2:].partition(b"\0")  # language tag
            _, _, value = rest.partition(b"\0")  # translated keyword
            found[key.decode("latin-1")] = value.decode("utf-8", "replace")
        at += 12 + length
    return found
