"""What ``lrp explain`` prints: the averaged rate, the summary's wording, per-image lines."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Task

from lrpcli.cli.explain_output import EtaColumn, RateColumn, average_rate, log_summary


def summary(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "inputs": 10, "processed": 10, "reused": 0, "ok": 10, "failed": 0, "interrupted": False,
        "stopped_early": False, "stdout_closed": False, "tolerance": 1e-5, "over_tolerance": [],
        "closure_check": "pass", "max_relative_closure_error": 2e-7, "pixel_share_median": 0.005,
        "pixel_share_min": 0.002, "elapsed_s": 4.0, "images_per_second": 2.5,
    }
    return {**base, **changes}


def printed(s: dict[str, Any]) -> str:
    stream = io.StringIO()
    log_summary(Console(file=stream, width=400, no_color=True), s, Path("out"), quiet=False)
    return stream.getvalue()


def test_summary_keeps_conservation_and_bookkeeping_apart() -> None:
    text = printed(summary())
    assert "median 0.5 % of the explained logit f(x) reaches the pixels (lowest 0.2 %)" in text
    assert "accounts close: pass (max relative error 2.0e-07 ≤ 1e-05)" in text
    assert "not a measure of conservation" in text and "closure: pass" not in text
    assert "10 of 10 images explained in 4.0 s (2.50 images/s)" in text


def test_summary_without_explained_images_shows_no_rate_and_no_closure() -> None:
    text = printed(summary(ok=0, failed=5, inputs=5, processed=5, stopped_early=True, images_per_second=0.0,
                           closure_check="n/a", max_relative_closure_error=None, pixel_share_median=None))
    assert "images/s" not in text and "accounts close" not in text
    assert "0 of 5 images explained" in text


def test_interrupt_and_closed_pipe_point_to_resume() -> None:
    assert "--resume to explain the other 6" in printed(summary(processed=4, ok=4, interrupted=True))
    closed = printed(summary(processed=2, ok=2, stdout_closed=True))
    assert "standard output closed by its reader: stopped after 2 of 10" in closed and "--resume" in closed


def test_average_rate_waits_then_averages_since_the_start() -> None:
    assert average_rate(8, 0.5) is None  # a first batch finishing at once says nothing yet
    assert average_rate(2, 10.0) is None
    assert average_rate(8, 4.0) == 2.0


def render(column: Any, completed: float, elapsed: float, total: float = 40) -> str:
    task = Task(0, "explain", total, completed, _get_time=lambda: 100.0 + elapsed)
    task.start_time = 100.0
    return column.render(task).plain


def test_progress_columns_use_the_average() -> None:
    assert render(RateColumn(), 4, 1.0) == "-- img/s"
    assert render(EtaColumn(), 4, 1.0) == "eta -:--:--"
    assert render(RateColumn(), 10, 5.0) == "2.00 img/s"
    assert render(EtaColumn(), 10, 5.0) == "eta 0:00:15"  # 30 left at 2 img/s
