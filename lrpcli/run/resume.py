"""``lrp explain --resume``: reuse the finished images of an earlier run in ``--out`` (its
``report.json``, and the journal a killed run left, :mod:`lrpcli.run.journal`).

An image counts as finished when the earlier report has an ``ok`` entry for the same input path
and output name whose output files all exist, and the earlier run used the same resolved config
(``run.config.sha256``) and the same ``--target``, ``--top-k`` and ``--save-npy``. Its entry is
copied into the new report (re-numbered to the current input order) and its files are left
alone; every other image (new, failed before, outputs missing) is explained again.

The earlier entries are parsed once, the ones kept are spooled to a temporary file as JSON lines
and read back one at a time while the new report is assembled, so memory does not grow with
the number of reused entries.
"""

from __future__ import annotations

import json
import tempfile
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from lrpcli.io.inputs import ImageInput
from lrpcli.run.entries import ImageEntry
from lrpcli.run.journal import JournalError, read_finished
from lrpcli.run.outputs import OutputPaths
from lrpcli.run.report import json_safe

__all__ = ["RESUME_OPTIONS", "ResumeError", "ResumeState", "check_same_run", "load_previous"]

RESUME_OPTIONS: tuple[str, ...] = (
    "target", "top_k", "save_npy", "composites", "contrast", "targets", "targets_sha256", "layers",
)  # fmt: skip
"""``run.options`` that must equal the earlier run's for its entries to be reused."""


class ResumeError(Exception):
    """The earlier report cannot be resumed from (a usage error; nothing was written)."""


class ResumeState:
    """The reusable entries of an earlier report, in input order, and what is left to do."""

    def __init__(self, report: Path, run: dict[str, Any], total: int) -> None:
        self.report = report
        self.run = run
        self.total = total
        self._spool: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8")
        self._pending: deque[int] = deque()
        self._done: set[int] = set()
        self._reading = False

    def keep(self, index: int, entry: ImageEntry) -> None:
        """Reuse ``entry`` for input ``index`` (call in increasing index order)."""
        self._spool.write(json.dumps(entry.to_dict(), ensure_ascii=True, separators=(",", ":")) + "\n")
        self._pending.append(index)
        self._done.add(index)

    @property
    def reused(self) -> int:
        """How many earlier entries are reused."""
        return len(self._done)

    def todo(self) -> list[int]:
        """Indexes (into the current inputs) of the images still to explain, in order."""
        return [i for i in range(self.total) if i not in self._done]

    def entries_before(self, index: int) -> Iterator[ImageEntry]:
        """Yield the reused entries whose input index is below ``index`` (each once, in order)."""
        if not self._reading:
            self._spool.flush()
            self._spool.seek(0)
            self._reading = True
        while self._pending and self._pending[0] < index:
            current = self._pending.popleft()
            entry = ImageEntry.from_dict(json.loads(self._spool.readline()))
            entry.index = current
            yield entry

    def close(self) -> None:
        self._spool.close()


def _finished(entry: ImageEntry, plan: OutputPaths, out_dir: Path) -> bool:
    """The entry is ``ok``, names the planned outputs (as the report writes names), and they (and
    the further maps' files) exist."""
    expected = plan.named()
    names = {key: path.relative_to(out_dir).as_posix() for key, path in expected.items()}
    if not entry.ok or entry.outputs != json_safe(names):
        return False
    for path in [*expected.values(), *(p for m in plan.more for p in m.all())]:
        if path.is_symlink() or not path.is_file() or path.stat().st_size == 0:
            return False
    return True


def _mismatch(report: Path, what: str) -> ResumeError:
    return ResumeError(
        f"--resume: {report} was written with {what}; its images cannot be reused. "
        "Use the same config and options, pass --overwrite (without --resume) to redo every "
        "image, or choose another --out"
    )


def check_same_run(source: Path, run: Mapping[str, Any], digest: str, options: Mapping[str, Any]) -> None:
    """Raise :class:`ResumeError` unless ``run`` (of a report or journal) used config ``digest``
    and the same :data:`RESUME_OPTIONS` as ``options``."""
    old_digest = str((run.get("config") or {}).get("sha256"))
    if old_digest != digest:
        raise _mismatch(source, f"another config (sha256 {old_digest[:12]}…, now {digest[:12]}…)")
    old_options = run.get("options") or {}
    for key in RESUME_OPTIONS:
        if old_options.get(key) != options.get(key):
            flag = "--" + key.replace("_", "-")
            raise _mismatch(source, f"{flag} {old_options.get(key)!r} (now {options.get(key)!r})")


def load_previous(
    out_dir: Path,
    inputs: Sequence[ImageInput],
    plans: Sequence[OutputPaths],
    *,
    digest: str,
    options: Mapping[str, Any],
) -> ResumeState | None:
    """Read ``OUT/report.json`` and ``OUT/journal.jsonl`` (``None`` if neither exists) and find
    the finished images.

    ``options`` holds the current values of :data:`RESUME_OPTIONS`. Raises
    :class:`ResumeError` when the report or journal is unreadable, not of this schema
    version, or was made with another config digest or other options.
    """
    out_dir = Path(out_dir)
    try:
        found = read_finished(out_dir)
    except JournalError as exc:
        raise ResumeError(f"--resume: {exc}") from None
    if found is None:
        return None
    for source, record in found.runs:
        check_same_run(source, record, digest, options)
    report, run = found.runs[0]
    by_key: dict[tuple[str, str], ImageEntry] = {}
    for raw in found.entries:
        if raw.get("status") == "ok":
            try:
                entry = ImageEntry.from_dict(raw)
            except (TypeError, KeyError, ValueError):  # not an entry this version wrote: explain again
                continue
            by_key[(entry.input, entry.rel)] = entry
    state = ResumeState(report, run, len(inputs))
    for index, (item, plan) in enumerate(zip(inputs, plans)):
        entry = by_key.get((json_safe(item.path.as_posix()), json_safe(item.rel.as_posix())))
        if entry is not None and _finished(entry, plan, out_dir):
            state.keep(index, entry)
    return state
