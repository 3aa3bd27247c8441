"""The run behind ``lrp audit``: check the options and the run folder, stream and cluster the maps,
write ``audit.json``, the pictures and ``index.html``, and print what was found (results on
standard output with ``--json``/``--jsonl``, everything else on standard error)."""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from lrpcli.audit.analyse import AuditSettings, ClassAudit, audit_run
from lrpcli.audit.document import (
    AUDIT_NAME,
    audit_document,
    cluster_lines,
    where_words,
    write_pictures,
)
from lrpcli.audit.gallery import (
    GALLERY_NAME,
    audit_gallery,
    write_gallery,
    write_run_gallery,
)
from lrpcli.audit.maps import AuditError, read_run
from lrpcli.audit.where import BoxError, read_boxes
from lrpcli.cli.documents import write_document
from lrpcli.cli.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Fail, error, warn
from lrpcli.cli.explain_output import write_stdout
from lrpcli.run.entries import now, percent
from lrpcli.run.report import jsonl_line

__all__ = ["AuditOptions", "run_audit", "write_explain_html"]


@dataclass(frozen=True)
class AuditOptions:
    """The options of ``lrp audit`` (see its ``--help``)."""

    run_dir: Path
    out: Path | None = None
    size: int = 32
    neighbours: int = 10
    clusters: int | None = None
    max_clusters: int = 8
    min_images: int = 10
    prototypes: int = 6
    border: float = 0.1
    boxes: Path | None = None
    seed: int = 0
    workers: int = 2
    json_out: bool = False
    jsonl_out: bool = False
    quiet: bool = False
    overwrite: bool = False


def _settings(o: AuditOptions) -> AuditSettings:
    if o.json_out and o.jsonl_out:
        raise Fail(EXIT_USAGE, "--json and --jsonl cannot be combined; choose one")
    try:
        boxes = read_boxes(o.boxes) if o.boxes is not None else {}
    except BoxError as exc:
        raise Fail(EXIT_USAGE, str(exc)) from None
    if o.clusters is not None and o.clusters > o.min_images:
        raise Fail(EXIT_USAGE, f"--clusters {o.clusters} is more than --min-images {o.min_images}; raise --min-images or ask for fewer clusters")
    return AuditSettings(
        size=o.size,
        neighbours=o.neighbours,
        clusters=o.clusters,
        max_clusters=o.max_clusters,
        min_images=o.min_images,
        prototypes=o.prototypes,
        border=o.border,
        seed=o.seed,
        workers=o.workers,
        boxes=boxes,
    )


def _class_line(console: Console, c: ClassAudit, quiet: bool) -> None:
    """One class's line on standard error."""
    if quiet:
        return
    head = f"{c.label} (class {c.index}): {len(c.members)} image{'s' if len(c.members) != 1 else ''}"
    if c.spray is None:
        console.print(Text.assemble(("skipped ", "yellow"), f"{head} ({where_words(c.where)}): {c.skipped}"))
        return
    parts = [
        f"cluster {k.index}: {len(k.members)} ({percent(len(k.members) / len(c.members))}), {where_words(k.where)}"
        for k in c.clusters
    ]
    strategies = f"eigengap suggests {c.spray.suggested} strateg{'y' if c.spray.suggested == 1 else 'ies'}"
    console.print(Text.assemble(("class ", "green"), f"{head}: {strategies}; " + "; ".join(parts)))


def run_audit(console: Console, o: AuditOptions) -> int:
    """Run ``lrp audit`` with the options ``o``; returns the exit code (usage errors raise ``Fail``)."""
    if importlib.util.find_spec("scipy") is None:
        raise Fail(EXIT_USAGE, "lrp audit needs SciPy for its spectral clustering: pip install 'lrpcli[audit]' (or pip install scipy)")
    settings = _settings(o)
    try:
        record = read_run(o.run_dir)
    except AuditError as exc:
        raise Fail(EXIT_USAGE, str(exc)) from None
    options = record.run.get("options") or {}
    if options.get("save_npy") is False:
        raise Fail(
            EXIT_USAGE,
            f"{o.run_dir}: explained without --save-npy, so the relevance maps SpRAy clusters were not kept; "
            f"run lrp explain again with --save-npy (e.g. lrp explain INPUTS -o {o.run_dir} --save-npy --overwrite)",
        )
    out = o.out if o.out is not None else o.run_dir / "audit"
    if out.exists() and not out.is_dir():
        raise Fail(EXIT_USAGE, f"--out {out}: exists and is not a folder")
    for name in (AUDIT_NAME, GALLERY_NAME):
        if (out / name).exists() and not o.overwrite:
            raise Fail(EXIT_USAGE, f"{out / name} already exists; pass --overwrite to replace it, or choose another --out")

    started_at, started = now(), time.perf_counter()
    total = int(record.summary.get("ok") or 0)
    show = not o.quiet and console.is_terminal
    progress = Progress(
        TextColumn("[bold]reading maps"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, disable=not show, transient=True,
    )
    task = progress.add_task("maps", total=total or None)
    with progress:
        found = audit_run(
            record,
            settings,
            progress=lambda n: progress.update(task, completed=n),
            on_class=lambda c: _class_line(console, c, o.quiet),
        )
    for name, why in found.unreadable:
        error(console, f"{name}: {why}")
    if not found.images:
        raise Fail(
            EXIT_USAGE,
            f"{o.run_dir}: no explained image with a readable relevance map "
            f"({found.not_explained} failed, {found.no_relevance} without --save-npy, {len(found.unreadable)} unreadable); "
            "explain the images with --save-npy first",
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Fail(EXIT_USAGE, f"--out {out}: cannot create the folder ({exc})") from None
    write_pictures(found, record, out)
    elapsed = time.perf_counter() - started
    doc = audit_document(
        found, record, settings, started_at=started_at, finished_at=now(), duration_s=elapsed,
        boxes=o.boxes.as_posix() if o.boxes is not None else None,
    )
    write_document(out / AUDIT_NAME, doc, to_stdout=o.json_out)
    write_gallery(out / GALLERY_NAME, audit_gallery(found, doc, record, out))
    if o.jsonl_out:
        ok = [True]
        for line in cluster_lines(found):
            write_stdout(jsonl_line(line) + "\n", ok)
            if not ok[0]:
                break
    summary = doc["summary"]
    if summary["clustered_classes"] == 0:
        warn(
            console,
            f"no class has at least {settings.min_images} explained images, so nothing was clustered; "
            f"{AUDIT_NAME} and {GALLERY_NAME} still show where each image's relevance lies. "
            "Explain more images per class, or lower --min-images (at least 3)",
        )
    if not o.quiet:
        console.print(
            Text.assemble(
                ("done ", "bold"),
                f"{summary['images']} maps, {summary['classes']} classes ({summary['clustered_classes']} clustered, "
                f"{summary['clusters']} clusters) in {elapsed:.1f} s; {out / AUDIT_NAME}, gallery {out / GALLERY_NAME}",
            )
        )
    return EXIT_FAILED if found.unreadable else EXIT_OK


def write_explain_html(console: Console, out: Path, quiet: bool) -> None:
    """``lrp explain --html``: write the run's ``index.html`` from its report (a failure is a warning:
    the run's own outputs are complete)."""
    try:
        path = write_run_gallery(out)
    except (AuditError, OSError) as exc:
        warn(console, f"--html: could not write {out / GALLERY_NAME} ({exc}); the report and pictures are complete")
        return
    if not quiet:
        console.print(Text.assemble(("gallery ", "bold"), f"{path} (open it in a browser)"))
