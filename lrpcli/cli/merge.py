"""``lrp merge``: one ``report.json`` from the ``--out`` folders of the shards of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from lrpcli.cli.app import app
from lrpcli.cli.command import Command, examples
from lrpcli.cli.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Fail, exit_with, stderr_console, warn
from lrpcli.cli.options import JsonOption, OverwriteOption, QuietOption

__all__ = ["merge"]

EXAMPLES = examples(
    ("Three shards run anywhere (a Slurm array: --shard auto), then one report", "lrp explain photos/ --shard 3/3 -o shards/3"),
    ("Merge the shards' reports (or a killed shard's journal) into shards/report.json", "lrp merge shards/1 shards/2 shards/3 --out shards"),
    ("The merged report on standard output", "lrp merge shards/* --out shards --json --overwrite"),
)


@app.command(cls=Command, epilog=EXAMPLES)
def merge(
    folders: Annotated[
        list[Path],
        typer.Argument(
            metavar="OUT_DIR...",
            help="The --out folders of the shards (lrp explain --shard K/N): their report.json, or "
            "the journal.jsonl of a shard that was killed.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="DIR",
            help="Folder of the merged report.json (default: the first OUT_DIR's parent); the "
            "entries' outputs are named relative to it.",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOption = False,
    quiet: QuietOption = False,
    overwrite: OverwriteOption = False,
) -> None:
    """Merge the reports of the shards of a run into one report.json with a recomputed summary.

    Refuses (exit 2) shards made with different configs, model weights, composites or options,
    and shards that overlap. Merging the N shards of a run gives the entries of one unsharded run.
    """
    console = stderr_console()
    exit_with(console, lambda: run_merge(console, folders, out, json_out=json_out, quiet=quiet, overwrite=overwrite))


def run_merge(
    console: Console, folders: list[Path], out: Path | None, *, json_out: bool, quiet: bool, overwrite: bool
) -> int:
    """Merge ``folders`` into ``OUT/report.json``; returns the exit code (refusals raise ``Fail``)."""
    from lrpcli.cli.explain_output import log_summary, print_report  # imports torch: not for --help
    from lrpcli.run.merge import MergeError, merge_runs, write_merged
    from lrpcli.run.outputs import REPORT_NAME

    target = out if out is not None else folders[0].parent
    path = target / REPORT_NAME
    named = {p.resolve() for p in folders}
    if target.resolve() in named and (path.exists() or len(folders) > 1):
        raise Fail(
            EXIT_USAGE,
            f"--out {target} is one of the shards' folders: the merged report would replace that "
            "shard's report; choose another --out (e.g. their parent)",
        )
    if path.exists() and not overwrite:
        raise Fail(EXIT_USAGE, f"{path} already exists; pass --overwrite to replace it or choose another --out")
    try:
        merged = merge_runs(folders, target)
    except MergeError as exc:
        raise Fail(EXIT_USAGE, f"cannot merge: {exc}") from None
    for message in merged.warnings:
        warn(console, message)
    target.mkdir(parents=True, exist_ok=True)
    summary = write_merged(merged, path)
    if json_out:
        print_report(target)
    log_summary(console, summary, target, quiet)
    return EXIT_FAILED if summary["failed"] else EXIT_OK
