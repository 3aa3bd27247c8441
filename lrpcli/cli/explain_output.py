"""What ``lrp explain`` prints: the progress rate column, per-image lines, the summary, the
report on standard output (``--json``) and ``--jsonl`` lines, surviving a closed pipe.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import ProgressColumn, Task
from rich.text import Text

from lrpcli.cli.errors import error, warn
from lrpcli.run.entries import ImageEntry, percent, share_words
from lrpcli.run.outputs import REPORT_NAME

__all__ = ["RateColumn", "log_entry", "log_summary", "print_report", "write_stdout"]


class RateColumn(ProgressColumn):
    """Images per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- img/s" if speed is None else f"{speed:.2f} img/s", style="cyan")


def print_report(out: Path) -> None:
    """Copy ``OUT/report.json`` to standard output (``--json``)."""
    with open(out / REPORT_NAME, encoding="utf-8") as handle:
        try:
            shutil.copyfileobj(handle, sys.stdout)
            sys.stdout.flush()
        except BrokenPipeError:
            _silence_stdout()


def write_stdout(text: str, ok: list[bool]) -> None:
    """Write ``text`` to standard output; on a closed pipe set ``ok[0]`` to False and stop writing."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        ok[0] = False
        _silence_stdout()


def _silence_stdout() -> None:
    """After a closed pipe (``lrp ... --jsonl | head``), send further output nowhere."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def log_entry(console: Console, entry: ImageEntry, quiet: bool) -> None:
    """One image's line on standard error: its error, or (unless ``quiet``) its warnings and result."""
    name = entry.input
    if not entry.ok or entry.result is None:
        error(console, f"{name}: {entry.error}")
        return
    if quiet:
        return
    for message in entry.warnings:
        warn(console, f"{name}: {message}")
    target = entry.result.target
    prob = target.probability
    shown = f"{prob * 100:.1f}%" if isinstance(prob, float) else "?"
    rel = entry.result.ledger.get("relative_closure_error")
    closure = f"{rel:.1e}" if isinstance(rel, float) else "n/a"
    console.print(
        Text.assemble(
            ("ok ", "green"),
            f"{name}: {target.label} ({shown}); {share_words(entry.result.conservation)}; "
            f"ledger closes to {closure}",
        )
    )


def log_summary(console: Console, summary: dict[str, Any], out: Path, quiet: bool) -> None:
    """The end of a run on standard error: interruption, failures, closure and (unless ``quiet``) totals."""
    done, total = summary["processed"], summary["inputs"]
    failed = summary["failed"]
    if summary["interrupted"]:
        warn(console, f"interrupted: {done} of {total} images finished; report: {out / REPORT_NAME}")
    elif summary["stopped_early"]:
        error(console, f"stopped at the first failure (--fail-fast): {done} of {total} images processed")
    check = summary["closure_check"]
    worst = summary["max_relative_closure_error"]
    if check == "fail":
        warn(
            console,
            f"ledger closure above the tolerance {summary['tolerance']:g} for "
            f"{len(summary['over_tolerance'])} image(s), worst {worst:.2e}",
        )
    if failed:
        error(console, f"{failed} of {total} images failed; see {out / REPORT_NAME}")
    if quiet:
        return
    rate = summary.get("images_per_second")
    elapsed = summary.get("elapsed_s") or 0.0
    closure = f"max relative {worst:.1e} ≤ {summary['tolerance']:g}" if worst is not None else "n/a"
    share = summary.get("pixel_share_median")
    reach = f"; median {percent(share)} of the logit reaches the pixels" if isinstance(share, float) else ""
    console.print(
        Text.assemble(
            ("done ", "bold"),
            f"{summary['ok']} of {total} images explained in {elapsed:.1f} s"
            + (f" ({rate:.2f} images/s)" if rate else "")
            + (f", {summary['reused']} of them by an earlier run (--resume)" if summary.get("reused") else "")
            + reach
            + f"; ledger closure: {check} ({closure}); outputs and report in {out}/",
        )
    )
