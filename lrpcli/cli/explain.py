"""``lrp explain``: the command's options and its SIGINT/SIGTERM handling.

The run itself (checks, model, pipeline, report, ``--resume``) is in
:mod:`lrpcli.cli.explain_run`; what it prints, in :mod:`lrpcli.cli.explain_output`.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from lrpcli.cli.app import app
from lrpcli.cli.command import Command, examples
from lrpcli.cli.errors import exit_with, stderr_console
from lrpcli.cli.scale_options import BackendChoice, BackendOption, RayAddressOption, ShardOption
from lrpcli.cli.options import (
    AllowPythonOption,
    CompositeOption,
    ConfigOption,
    DeviceChoice,
    DeviceOption,
    JsonOption,
    OutOption,
    OverwriteOption,
    PathsArgument,
    QuietOption,
    SeedOption,
)

__all__ = ["explain"]

EXAMPLES = examples(
    ("Heatmaps and overlays for every image in a folder (outputs mirror its tree)", "lrp explain photos/ -o heatmaps"),
    ("Why the top class rather than the runner-up (red: for it, blue: for the runner-up)", "lrp explain cat.jpg --contrast rank2 -o why"),
    ("Audit against labels: each image's class from a CSV, relevance at layer3 too", "find val -name '*.jpg' | lrp explain - --targets labels.csv --layer layer3 -o audit"),
    ("Finish an interrupted run: keep what it wrote, explain the rest", "lrp explain photos/ -o heatmaps --resume"),
)


@app.command(cls=Command, epilog=EXAMPLES)
def explain(
    paths: PathsArgument = None,
    config: ConfigOption = None,
    out: OutOption = Path("lrp-out"),
    composite: CompositeOption = None,
    target: Annotated[
        str,
        typer.Option(
            "--target",
            "-t",
            metavar="pred|INDEX|LABEL|rankN|topK",
            help="Class to explain: the predicted one, a class index, a class name, the N-th ranked "
            "class (rank2: the runner-up), or the top K classes, one map each from one forward pass "
            "(NAME.heatmap.png, NAME.top2.heatmap.png, ...).",
        ),
    ] = "pred",
    contrast: Annotated[
        str | None,
        typer.Option(
            "--contrast",
            metavar="INDEX|LABEL|pred|rankN",
            help="Explain why the target rather than this class: the map of f_target - f_contrast "
            "(the plain logit difference; with lrpcli's rules, the target's map minus this class's).",
            show_default=False,
        ),
    ] = None,
    targets_file: Annotated[
        Path | None,
        typer.Option(
            "--targets",
            metavar="FILE",
            help="A class per image (audits against ground truth): CSV rows 'path,class' or JSON lines "
            "{\"path\": ..., \"target\": ...}; class as index or name; paths relative to FILE or file "
            "names. The report gives the predicted class beside it.",
            show_default=False,
        ),
    ] = None,
    layer: Annotated[
        list[str] | None,
        typer.Option(
            "--layer",
            metavar="NAME",
            help="Also keep the relevance arriving at this module's output (repeatable; names as in "
            "lrp inspect): NAME.layer-MODULE.npy and the top channels in the report.",
            show_default=False,
        ),
    ] = None,
    top_k: Annotated[
        int, typer.Option("--top-k", "-k", min=1, metavar="K", help="Predictions listed per image.")
    ] = 5,
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", min=1, metavar="N", help="Images per forward/backward pass.")
    ] = 8,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", "-w", min=1, metavar="N", help="Threads for decoding and for writing outputs (each)."
        ),
    ] = 2,
    device: DeviceOption = DeviceChoice.auto,
    json_out: JsonOption = False,
    jsonl_out: Annotated[
        bool,
        typer.Option("--jsonl", help="Print one JSON object per image on standard output as each finishes."),
    ] = False,
    quiet: QuietOption = False,
    overwrite: OverwriteOption = False,
    fail_fast: Annotated[
        bool, typer.Option("--fail-fast", help="Stop at the first image that cannot be explained.")
    ] = False,
    null: Annotated[
        bool,
        typer.Option("--null", "-0", help="Paths on standard input are NUL-separated (find -print0)."),
    ] = False,
    save_npy: Annotated[
        bool, typer.Option("--save-npy", help="Also write NAME.relevance.npy (raw float32, 3xHxW).")
    ] = False,
    cmap: Annotated[
        str | None,
        typer.Option(
            "--cmap",
            metavar="NAME",
            help="Colour map (overrides the config): bwr, seismic, coolwarm, RdBu_r, bwr_black, "
            "or any matplotlib map.",
            show_default=False,
        ),
    ] = None,
    max_pixels: Annotated[
        int | None,
        typer.Option(
            "--max-pixels",
            min=1,
            metavar="N",
            help="Refuse images with more pixels than this (decompression-bomb limit; overrides the config).",
            show_default=False,
        ),
    ] = None,
    view: Annotated[
        str | None,
        typer.Option(
            "--view",
            metavar="full|crop",
            help="full: draw the map on the whole photo, the part the model did not see hatched "
            "(default); crop: on the model's centre crop only.",
            show_default=False,
        ),
    ] = None,
    scale: Annotated[
        str | None,
        typer.Option(
            "--scale",
            metavar="percentile|max",
            help="Full colour at a high percentile of |R| (default 99, see --percentile) or at max |R|.",
            show_default=False,
        ),
    ] = None,
    percentile: Annotated[
        float | None,
        typer.Option(
            "--percentile",
            min=0.001,
            max=100.0,
            metavar="P",
            help="Full colour at the P-th percentile of |R| (implies --scale percentile).",
            show_default=False,
        ),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode",
            metavar="signed|positive|absolute",
            help="Draw R with its sign (red for, blue against; default), only its positive part, or |R|.",
            show_default=False,
        ),
    ] = None,
    legend: Annotated[
        bool, typer.Option("--legend", help="Add a colour bar with the scale and what the colours mean.")
    ] = False,
    html: Annotated[
        bool,
        typer.Option(
            "--html",
            help="Also write index.html: a gallery of the run (thumbnails, classes, pixel shares; "
            "filter and sort) that opens from the folder, no server needed.",
        ),
    ] = False,
    smooth: Annotated[
        float | None,
        typer.Option(
            "--smooth",
            min=0.0,
            metavar="SIGMA",
            help="Display-only Gaussian blur in model pixels (default 1.5; 0: the raw map).",
            show_default=False,
        ),
    ] = None,
    composites: Annotated[
        str | None,
        typer.Option(
            "--composites",
            metavar="A,B,...",
            help="Also write NAME.compare.png: the photo and one map per composite, side by side "
            "(presets, or config for the config's rules). The first is the one reported.",
            show_default=False,
        ),
    ] = None,
    ledger: Annotated[
        str | None,
        typer.Option(
            "--ledger",
            metavar="compact|full|totals",
            help="Per-image ledger in the report: totals and the 5 steps that absorbed most "
            "(default), every step, or totals only.",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Keep the images an earlier run with the same config and options finished in "
            "--out (their outputs and report.json entries); explain only the rest.",
        ),
    ] = False,
    allow_python: AllowPythonOption = None,
    seed: SeedOption = None,
    shard: ShardOption = None,
    backend: BackendOption = BackendChoice.local,
    ray_address: RayAddressOption = None,
) -> None:
    """Explain images: write heatmaps, overlays and report.json into --out.

    Outputs mirror the input tree; --json prints the report, --jsonl one line per image as it finishes.
    """
    from lrpcli.cli.explain_options import ExplainOptions  # imports torch: not for --help
    from lrpcli.cli.explain_run import run_explain

    console = stderr_console()
    stop = threading.Event()
    options = ExplainOptions(
        paths=list(paths or []),
        config=config,
        out=out,
        composite=composite,
        target=target,
        contrast=contrast,
        targets_file=targets_file,
        layers=list(layer or []),
        top_k=top_k,
        batch_size=batch_size,
        workers=workers,
        device=device,
        json_out=json_out,
        jsonl_out=jsonl_out,
        quiet=quiet,
        overwrite=overwrite,
        fail_fast=fail_fast,
        null=null,
        save_npy=save_npy,
        cmap=cmap,
        max_pixels=max_pixels,
        resume=resume,
        allow_python=list(allow_python or []),
        seed=seed,
        view=view,
        scale=scale,
        percentile=percentile,
        mode=mode,
        legend=legend,
        html=html,
        smooth=smooth,
        composites=composites,
        ledger=ledger,
        shard=shard,
        backend=backend.value,
        ray_address=ray_address,
    )
    previous = _install_signal_handlers(stop)
    try:
        exit_with(console, lambda: run_explain(console, stop, options))
    finally:
        _restore_signal_handlers(previous)


def _install_signal_handlers(stop: threading.Event) -> dict[int, Any]:
    """First SIGINT/SIGTERM: set ``stop`` (finish what is in flight); second: abort now."""

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):
            pass
    return previous


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    """Put back the handlers :func:`_install_signal_handlers` replaced."""
    for sig, old in previous.items():
        try:
            signal.signal(sig, old)
        except (ValueError, OSError, TypeError):
            pass
