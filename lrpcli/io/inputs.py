"""Input discovery: command-line path arguments (files, folders, globs, ``-``) to :class:`ImageInput`.

Knows nothing about LRP or decoding: it finds files, de-duplicates them and gives each a
relative path under which its outputs mirror the input tree (:func:`discover`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import stat
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import BinaryIO, TextIO

__all__ = ["IMAGE_EXTENSIONS", "ImageInput", "InputError", "discover", "is_image_path"]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
"""Lower-case file suffixes (with the dot) picked up when scanning folders and globs."""

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
    pattern matching any image, and when ``-`` is the only path and standard input gives none.
    """
    raw: list[tuple[Path, Path]] = []
    stdin_read = False
    for entry in paths:
        if entry == "-":
            if stdin_read:
                continue
            stdin_read = True
            lines = _read_stdin_paths(stdin, null)
            if not lines and all(p == "-" for p in paths):
                separated = "NUL-separated" if null else "one per line"
                raise InputError(
                    f"standard input gave no paths; pipe image paths into it ({separated}, e.g. "
                    "from find photos -name '*.jpg'), or give the paths as arguments"
                )
            for line in lines:
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
