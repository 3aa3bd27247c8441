"""What ``lrp explain`` prints: the progress rate column, per-image lines, the summary, the
report on standard output (``--json``) and ``--jsonl`` lines, surviving a closed pipe.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import ProgressColumn, Task
from rich.text import Text

from lrpcli.cli.errors import error, warn
from lrpcli.cli.pipes import silence_stdout
from lrpcli.run.entries import ImageEntry, percent, share_words
from lrpcli.run.outputs import REPORT_NAME

__all__ = ["EtaColumn", "RateColumn", "average_rate", "log_entry", "log_summary", "print_report", "write_stdout"]


def average_rate(completed: float, elapsed: float | None, *, settle_s: float = 2.0, settle_n: int = 3) -> float | None:
    """Images per second since the start (``completed / elapsed``), or None until ``settle_s``
    seconds and ``settle_n`` images have passed: batches finish several images at once, so the
    rate over the last few seconds (Rich's) jumps; the average since the start does not."""
    if not elapsed or elapsed < settle_s or completed < settle_n:
        return None
    return completed / elapsed


class RateColumn(ProgressColumn):
    """Images per second, averaged since the start (:func:`average_rate`)."""

    def render(self, task: Task) -> Text:
        rate = average_rate(task.completed, task.elapsed)
        return Text("-- img/s" if rate is None else f"{rate:.2f} img/s", style="cyan")


class EtaColumn(ProgressColumn):
    """Time left at the :func:`average_rate`, as ``eta 0:01:23``."""

    def render(self, task: Task) -> Text:
        rate = average_rate(task.completed, task.elapsed)
        if rate is None or task.total is None:
            return Text("eta -:--:--", style="cyan")
        left = max(task.total - task.completed, 0) / rate
        hours, rest = divmod(int(round(left)), 3600)
        return Text(f"eta {hours}:{rest // 60:02d}:{rest % 60:02d}", style="cyan")


def print_report(out: Path) -> None:
    """Copy ``OUT/report.json`` to standard output (``--json``)."""
    with open(out / REPORT_NAME, encoding="utf-8") as handle:
        try:
            shutil.copyfileobj(handle, sys.stdout)
            sys.stdout.flush()
        except BrokenPipeError:
            silence_stdout()


def write_stdout(text: str, ok: list[bool]) -> None:
    """Write ``text`` to standard output; on a closed pipe set ``ok[0]`` to False and stop writing."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        ok[0] = False
        silence_stdout()


def log_entry(console: Console, entry: ImageEntry, quiet: bool, out: Path | None = None) -> None:
    """One image's line on standard error: its error, or (unless ``quiet``) its warnings and result:
    prediction, the share of f(x) that reached the pixels, the ledger's bookkeeping check and where
    its pictures went (the overlay's path, under ``out``)."""
    name = entry.input
    if not entry.ok or entry.result is None:
        error(console, f"{name}: {entry.error}")
        return
    if quiet:
        return
    for message in entry.warnings:
        warn(console, f"{name}: {message}")
    result = entry.result
    target = result.target
    shown = _class_words(target)
    if result.contrast is not None:
        shown += f" rather than {_class_words(result.contrast)}"
    predicted = result.predicted
    if predicted is not None and predicted.index != target.index:
        shown += f", predicted {predicted.label}"
    if result.more:
        shown += "; also " + ", ".join(str((m.get("target") or {}).get("label")) for m in result.more)
    what = "the logit" if result.contrast is None else "the logit difference"
    rel = entry.result.ledger.get("relative_closure_error")
    closure = f"{rel:.1e}" if isinstance(rel, float) else "n/a"
    shown_at = entry.outputs.get("overlay") or entry.outputs.get("heatmap")
    where = f" → {out / shown_at if out is not None else shown_at}" if shown_at else ""
    console.print(
        Text.assemble(
            ("ok ", "green"),
            f"{name}: {shown}; {share_words(result.conservation, what)}; "
            f"accounts close to {closure}" + float64_words(entry.result.precision) + where,
        )
    )


def _class_words(target: Any) -> str:
    """``tabby (62.0%)``: a class and its probability."""
    prob = target.probability
    return f"{target.label} ({prob * 100:.1f}%)" if isinstance(prob, float) else f"{target.label} (?)"


def float64_words(precision: dict[str, Any] | None) -> str:
    """``; float64 redo (ledger did not close in float32: 3.9e-03)`` for an image recomputed in
    float64 (its result's ``precision``), else nothing."""
    if not precision:
        return ""
    at_stake = precision.get("float32_error")
    stake = f": {at_stake:.1e}" if isinstance(at_stake, float) else ""
    return f"; float64 redo (ledger did not close in float32{stake})"


def log_summary(console: Console, summary: dict[str, Any], out: Path, quiet: bool) -> None:
    """The end of a run on standard error: interruption, failures, and (unless ``quiet``) totals in
    two lines: how much of f(x) reached the pixels (conservation), then whether the ledger's
    accounts close (bookkeeping: every part of f(x) is found somewhere, not that it is at the pixels)."""
    done, total = summary["processed"], summary["inputs"]
    failed = summary["failed"]
    left = max(total - done, 0)
    resume = f"; run the same command with --resume to explain the other {left}" if left else ""
    if summary["interrupted"]:
        warn(console, f"interrupted: {done} of {total} images finished; report: {out / REPORT_NAME}{resume}")
    elif summary["stopped_early"]:
        error(console, f"stopped at the first failure (--fail-fast): {done} of {total} images processed{resume}")
    elif summary.get("stdout_closed") and not quiet:
        console.print(
            Text(f"standard output closed by its reader: stopped after {done} of {total} images{resume}", style="dim")
        )
    check = summary["closure_check"]
    worst = summary["max_relative_closure_error"]
    if check == "fail":
        warn(
            console,
            f"ledger accounts do not close within the tolerance {summary['tolerance']:g} for "
            f"{len(summary['over_tolerance'])} image(s), worst {worst:.2e}: relevance went missing "
            "in the engine (a bug, or float rounding; see the report's ledger steps)",
        )
    if failed:
        error(console, f"{failed} of {total} images failed; see {out / REPORT_NAME}")
    if quiet:
        return
    redone = summary.get("float64_redone") or 0
    if redone:
        console.print(
            Text.assemble(
                ("float64 ", "yellow"),
                f"{redone} of {summary['ok']} images recomputed in float64: float32 rounding kept "
                f"their ledgers from closing within {summary['tolerance']:g} (precision auto); this is slower",
            )
        )
    rate = summary.get("images_per_second")
    elapsed = summary.get("elapsed_s") or 0.0
    console.print(
        Text.assemble(
            ("done ", "bold"),
            f"{summary['ok']} of {total} images explained in {elapsed:.1f} s"
            + (f" ({rate:.2f} images/s)" if rate else "")
            + (f", {summary['reused']} of them by an earlier run (--resume)" if summary.get("reused") else "")
            + f"; outputs and report in {out}/",
        )
    )
    share, low = summary.get("pixel_share_median"), summary.get("pixel_share_min")
    if isinstance(share, float):
        lowest = f" (lowest {percent(low)})" if isinstance(low, float) and summary["ok"] > 1 else ""
        console.print(
            Text.assemble(
                ("conservation ", "bold"),
                f"median {percent(share)} of the explained logit f(x) reaches the pixels{lowest}; "
                "the difference is in the report's conservation and ledger.absorbed",
            )
        )
    if worst is None:
        return
    closure = f"max relative error {worst:.1e} {'≤' if check == 'pass' else '>'} {summary['tolerance']:g}"
    console.print(
        Text.assemble(
            ("ledger ", "bold"),
            f"accounts close: {check} ({closure}); a bookkeeping check that every part of f(x) is "
            "accounted for, not a measure of conservation",
        )
    )
