"""``lrp merge``: one report from the reports (or journals) of the shards of a run.

Each folder is an ``lrp explain --out`` folder: its ``report.json``, or the ``journal.jsonl`` a
killed run left, or both (:func:`lrpcli.run.journal.read_finished`). The shards must have been
made with the same resolved config (its digest covers the bytes of a weights file and of a
``python:`` model file), the same model and composite, and the same options that change an
entry (:data:`lrpcli.run.resume.RESUME_OPTIONS`); no input may be in two of them. The merged
entries are sorted by their index among all inputs (``--shard`` keeps it) and numbered again;
their ``outputs`` are made relative to the merged report's folder. The summary is recomputed
over all entries, with the images per second over the whole span of the shards' runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lrpcli.run.entries import ImageEntry, now
from lrpcli.run.journal import FinishedRun, JournalError, entry_key, read_finished
from lrpcli.run.outputs import REPORT_NAME
from lrpcli.run.report import ReportWriter
from lrpcli.run.resume import RESUME_OPTIONS
from lrpcli.run.shards import Shard

__all__ = ["MergeError", "Merged", "merge_runs", "write_merged"]


class MergeError(Exception):
    """The folders cannot be merged (a usage error; the message says why and what to do)."""


@dataclass
class Merged:
    """The merged run: its ``run`` record, the entries in order, the inputs, the time span."""

    run: dict[str, Any]
    entries: list[ImageEntry]
    inputs: int
    elapsed_s: float | None
    tolerance: float
    warnings: list[str] = field(default_factory=list)


def _fingerprint(run: dict[str, Any]) -> dict[str, Any]:
    """What must be equal between shards, by what it is called in the refusal."""
    model = run.get("model") or {}
    composite = run.get("composite") or {}
    options = run.get("options") or {}
    return {
        "config (run.config.sha256: the resolved config and the bytes of its weights and model files)": (
            run.get("config") or {}
        ).get("sha256"),
        "model (source, name, weights, classes)": [
            model.get(k) for k in ("source", "name", "weights", "num_classes")
        ],
        "composite (name, rules, options)": [composite.get(k) for k in ("name", "spec", "options")],
        **{f"--{k.replace('_', '-')}": options.get(k) for k in RESUME_OPTIONS},
    }


def _rebased(outputs: dict[str, str], folder: str, out: str) -> dict[str, str]:
    """``outputs`` (relative to the shard's ``folder``) relative to the merged report's ``out``."""
    return {k: Path(os.path.relpath(os.path.join(folder, v), out)).as_posix() for k, v in outputs.items()}


def _time(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None


def _span(found: Sequence[FinishedRun]) -> float | None:
    """Seconds from the first shard's start to the last one's end (a journal: its last write)."""
    starts, ends = [], []
    for run in found:
        for source, record in run.runs:
            start = _time(record.get("started_at"))
            if start is not None:
                starts.append(start)
            end = _time(record.get("finished_at")) if source.name == REPORT_NAME else source.stat().st_mtime
            if end is not None:
                ends.append(end)
    if not starts or not ends:
        return None
    return max(max(ends) - min(starts), 0.0)


def merge_runs(folders: Sequence[Path], out: Path) -> Merged:
    """Read and check the shards in ``folders``; the merged run for a report in ``out``.

    Raises :class:`MergeError` when a folder holds no run, the runs differ in config, model,
    composite or options, a shard is given twice, or an input is in two folders.
    """
    found: list[FinishedRun] = []
    for folder in folders:
        try:
            run = read_finished(Path(folder))
        except JournalError as exc:
            raise MergeError(str(exc)) from None
        if run is None:
            raise MergeError(f"{folder}: no report.json or journal.jsonl; name the --out folders of lrp explain")
        found.append(run)
    reference = _fingerprint(found[0].run)
    first = found[0].runs[0][0]
    for run in found:
        for source, record in run.runs:
            for what, value in _fingerprint(record).items():
                if value != reference[what]:
                    raise MergeError(
                        f"{source} and {first} were made with different {what}: {value!r} and "
                        f"{reference[what]!r}; merge only the shards of one run (same config, "
                        "weights, composite and options)"
                    )
    shards: dict[Shard, Path] = {}
    counts = set()
    for run in found:
        shard = Shard.of_run(run.run)
        counts.add(shard.count if shard else None)
        if shard is not None:
            if shard in shards:
                raise MergeError(
                    f"shard {shard} is in both {shards[shard]} and {run.folder}; "
                    "name each shard's folder once"
                )
            shards[shard] = run.folder
    if len(counts) > 1:
        raise MergeError(
            "the folders were made with different --shard counts (or with and without --shard): "
            f"{sorted(str(c) for c in counts)}; merge the N shards of one run"
        )
    seen: dict[tuple[str, str], Path] = {}
    rows: list[tuple[int, str, ImageEntry]] = []
    out_real = os.path.realpath(out)
    for run in found:
        for raw in run.entries:
            key = entry_key(raw)
            if key in seen:
                raise MergeError(
                    f"{key[0]} is in both {seen[key]} and {run.folder}: the shards overlap; merge "
                    "the disjoint shards of one run (lrp explain --shard K/N)"
                )
            seen[key] = run.folder
            entry = ImageEntry.from_dict(raw)
            folder_real = os.path.realpath(run.folder)
            if folder_real != out_real:  # outputs are named relative to the report's folder
                entry.outputs = _rebased(entry.outputs, folder_real, out_real)
                for more in (entry.result.more or []) if entry.result is not None else []:  # --target topK
                    more["outputs"] = _rebased(more.get("outputs") or {}, folder_real, out_real)
            rows.append((entry.index, entry.rel, entry))
    rows.sort(key=lambda row: (row[0], row[1]))
    entries = [entry for _, _, entry in rows]
    for number, entry in enumerate(entries):
        entry.index = number
    warnings = []
    count = next(iter(counts))
    if count is not None and len(shards) < count:
        missing = [f"{k}/{count}" for k in range(1, count + 1) if Shard(k, count) not in shards]
        warnings.append(f"shards {', '.join(missing)} are missing: the merged report covers {len(shards)} of {count}")
    unfinished = [run.folder.as_posix() for run in found if not run.complete]
    if unfinished:
        warnings.append(
            f"{', '.join(unfinished)}: journal of a run that did not finish; its finished images are "
            "merged (finish it with lrp explain --resume and merge again for the rest)"
        )
    run_record = {k: v for k, v in found[0].run.items() if k not in ("shard", "resumed")}
    starts = [r.get("started_at") for f in found for _, r in f.runs if r.get("started_at")]
    run_record.update(
        started_at=min(starts) if starts else None,
        out_dir=Path(out).as_posix(),
        merged={
            "folders": [run.folder.as_posix() for run in found],
            "shards": [
                {
                    "folder": run.folder.as_posix(),
                    "shard": run.run.get("shard"),
                    "sources": [source.name for source, _ in run.runs],
                    "images": len(run.entries),
                    "started_at": run.run.get("started_at"),
                    "finished_at": run.run.get("finished_at"),
                }
                for run in found
            ],
            "merged_at": now(),
        },
    )
    tolerance = float((found[0].summary or {}).get("tolerance") or _tolerance(found[0].run))
    inputs = sum(_inputs(run) for run in found)
    return Merged(run_record, entries, max(inputs, len(entries)), _span(found), tolerance, warnings)


def _inputs(run: FinishedRun) -> int:
    shard = run.run.get("shard")
    return int(shard.get("inputs") or 0) if isinstance(shard, dict) else run.inputs


def _tolerance(run: dict[str, Any]) -> float:
    resolved = (run.get("config") or {}).get("resolved") or {}
    return float((resolved.get("report") or {}).get("tolerance") or 1e-5)


def write_merged(merged: Merged, path: Path) -> dict[str, Any]:
    """Write the merged ``report.json`` to ``path`` (atomically); returns its summary."""
    failed = any(not e.ok for e in merged.entries)
    with ReportWriter(path, merged.run, inputs=merged.inputs, tolerance=merged.tolerance) as writer:
        for entry in merged.entries:
            writer.add(entry)
        return writer.write(
            exit_code=1 if failed else 0,
            elapsed_s=merged.elapsed_s,
            run_updates={"finished_at": now(), "duration_s": merged.elapsed_s},
        )
