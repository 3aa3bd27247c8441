"""``lrp audit``: SpRAy over an earlier ``lrp explain`` run (its report and ``--save-npy`` maps):
per class, the clusters of its heatmaps, ``audit.json``, pictures and an ``index.html`` gallery.

The run itself is in :mod:`lrpcli.cli.audit_run`; this module holds only the options, so that
``lrp audit --help`` imports neither NumPy's heavier friends nor torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from lrpcli.cli.app import app
from lrpcli.cli.command import Command, examples
from lrpcli.cli.errors import exit_with, stderr_console
from lrpcli.cli.options import JsonOption, OverwriteOption, QuietOption

__all__ = ["audit"]

EXAMPLES = examples(
    ("Audit a run made with: lrp explain photos/ -o heatmaps --save-npy", "lrp audit heatmaps/ -o heatmaps/audit"),
    ("Clusters whose relevance sits in the image border, one JSON line each", "lrp audit heatmaps/ --jsonl -q | jq -c 'select(.where.border > 0.5)'"),
    ("Three clusters per class; the share of relevance outside the objects' boxes", "lrp audit heatmaps/ --clusters 3 --boxes boxes.csv --overwrite"),
)


@app.command(cls=Command, epilog=EXAMPLES)
def audit(
    run_dir: Annotated[
        Path,
        typer.Argument(
            metavar="RUN_DIR",
            help="The --out folder of an lrp explain run made with --save-npy (its report.json and NAME.relevance.npy files).",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", metavar="DIR", help="Output folder (created if missing). Default: RUN_DIR/audit.", show_default=False
        ),
    ] = None,
    size: Annotated[
        int, typer.Option("--size", min=4, max=128, metavar="N", help="Downsize each map to N x N cells (sum-pooled) before clustering.")
    ] = 32,
    neighbours: Annotated[
        int, typer.Option("--neighbours", min=2, metavar="K", help="Nearest neighbours per map in the affinity graph.")
    ] = 10,
    clusters: Annotated[
        int | None,
        typer.Option(
            "--clusters", min=1, metavar="K", help="Clusters per class (default: the number the eigengap suggests).", show_default=False
        ),
    ] = None,
    max_clusters: Annotated[
        int, typer.Option("--max-clusters", min=2, metavar="K", help="Most clusters the eigengap may suggest.")
    ] = 8,
    min_images: Annotated[
        int,
        typer.Option("--min-images", min=3, metavar="N", help="Classes with fewer explained images are listed but not clustered."),
    ] = 10,
    prototypes: Annotated[
        int, typer.Option("--prototypes", min=1, max=50, metavar="N", help="Prototypes per cluster (the images whose maps are closest to its mean map).")
    ] = 6,
    border: Annotated[
        float,
        typer.Option("--border", min=0.01, max=0.49, metavar="F", help="Width of the border band, as a fraction of each side, for the border share."),
    ] = 0.1,
    boxes: Annotated[
        Path | None,
        typer.Option(
            "--boxes",
            metavar="FILE",
            help="Objects' bounding boxes in original pixels, CSV rows path,x0,y0,x1,y1 or a JSON object "
            "mapping each path to its four numbers; adds the share of relevance outside the box.",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Seed of the k-means restarts.")] = 0,
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, metavar="N", help="Threads reading the maps.")] = 2,
    json_out: JsonOption = False,
    jsonl_out: Annotated[
        bool, typer.Option("--jsonl", help="Print one JSON object per cluster on standard output.")
    ] = False,
    quiet: QuietOption = False,
    overwrite: OverwriteOption = False,
) -> None:
    """Find the strategies a model uses per class (SpRAy): cluster a run's heatmaps, write audit.json,
    pictures and index.html.

    Per explained class with at least --min-images images: downsize the maps, link each to its
    nearest neighbours, embed the graph spectrally, let the eigengap suggest how many strategies
    there are, and cluster. A cluster whose relevance sits in a corner or the border is a shortcut
    to look at (a watermark, a frame, a text overlay).
    """
    # the audit multiplies small matrices from several threads: BLAS threads of its own only contend
    # with them (2.3x slower on two busy cores); set before NumPy loads, a value the user set wins
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from lrpcli.cli.audit_run import AuditOptions, run_audit

    console = stderr_console()
    options = AuditOptions(
        run_dir=run_dir,
        out=out,
        size=size,
        neighbours=neighbours,
        clusters=clusters,
        max_clusters=max_clusters,
        min_images=min_images,
        prototypes=prototypes,
        border=border,
        boxes=boxes,
        seed=seed,
        workers=workers,
        json_out=json_out,
        jsonl_out=jsonl_out,
        quiet=quiet,
        overwrite=overwrite,
    )
    exit_with(console, lambda: run_audit(console, options))
