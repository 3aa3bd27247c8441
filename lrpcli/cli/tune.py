"""``lrp tune``: the command's options; the run is in :mod:`lrpcli.cli.tune_run`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lrpcli.cli.app import app
from lrpcli.cli.command import Command, examples
from lrpcli.cli.errors import exit_with, stderr_console
from lrpcli.cli.options import (
    AllowPythonOption,
    ConfigOption,
    DeviceChoice,
    DeviceOption,
    JsonOption,
    OutOption,
    OverwriteOption,
    PathsArgument,
    QuietOption,
)
from lrpcli.evaluation.choices import PERTURBATIONS, PerturbationName
from lrpcli.tuning.choices import SCORES
from lrpcli.tuning.space import SPACES

__all__ = ["tune"]

EXAMPLES = examples(
    ("Search the standard space on your images; tuned/tuned.yaml is the winner, a ready --config", "lrp tune photos/ -o tuned"),
    ("Explain with the winner", "lrp explain photos/ -c tuned/tuned.yaml -o heatmaps-tuned"),
    ("A quick search: the small space, at most 5000 forward passes", "lrp tune photos/ --space small --budget 5000"),
    ("Search on one set of images, check the winner on another, by SRG", "lrp tune search/ --held-out check/ --score srg"),
)


@app.command(cls=Command, epilog=EXAMPLES)
def tune(
    paths: PathsArgument = None,
    config: ConfigOption = None,
    score: Annotated[
        str, typer.Option("--score", help="; ".join(f"{k}: {v}" for k, v in SCORES.items()) + ".")
    ] = "aopc",
    space: Annotated[
        str,
        typer.Option(
            "--space",
            help=f"How many values of each hyperparameter to try: {', '.join(SPACES)} "
            "(small ~20 candidates, standard ~80, large ~130).",
        ),
    ] = "standard",
    budget: Annotated[
        int | None,
        typer.Option("--budget", min=1, metavar="N", help="At most N forward passes for the search (default: no limit)."),
    ] = None,
    minutes: Annotated[
        float | None,
        typer.Option("--minutes", min=0.0, metavar="M", help="Stop starting new evaluations after M minutes."),
    ] = None,
    split: Annotated[
        float,
        typer.Option("--split", min=0.05, max=0.95, metavar="F", help="Fraction of the images to search on; the rest is held out."),
    ] = 0.5,
    held_out: Annotated[
        list[str] | None,
        typer.Option(
            "--held-out",
            metavar="PATH",
            help="Held-out images (files, folders, globs; repeatable): then every PATHS image is searched on "
            "and --split is not used.",
        ),
    ] = None,
    min_pixel_share: Annotated[
        float | None,
        typer.Option(
            "--min-pixel-share",
            metavar="S",
            help="Only candidates whose median ΣR_pixels / f(x) is at least S (checked on two search images).",
        ),
    ] = None,
    eta: Annotated[
        int, typer.Option("--eta", min=2, metavar="K", help="Successive halving keeps the best 1/K each round.")
    ] = 3,
    steps: Annotated[int, typer.Option("--steps", min=1, metavar="N", help="Perturbation steps per curve.")] = 100,
    patch: Annotated[int, typer.Option("--patch", min=1, metavar="P", help="Patch size in pixels.")] = 9,
    perturbation: Annotated[
        PerturbationName,
        typer.Option("--perturbation", help="What perturbed patches become: " + ", ".join(PERTURBATIONS) + "."),
    ] = "uniform",
    random_runs: Annotated[
        int, typer.Option("--random-runs", min=1, metavar="R", help="Random orders per held-out image.")
    ] = 5,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            metavar="S",
            help="Seed of the split, noise and random orders, and of the random initialisation of a "
            "model built without weights (default: the config's model.seed, 0).",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", min=1, metavar="N", help="Perturbed copies per forward pass.")
    ] = 32,
    device: DeviceOption = DeviceChoice.auto,
    out: OutOption = Path("lrp-tune"),
    json_out: JsonOption = False,
    quiet: QuietOption = False,
    overwrite: OverwriteOption = False,
    allow_python: AllowPythonOption = None,
) -> None:
    """Search composites and hyperparameters for the most faithful maps on your images.

    Writes tuned.yaml (the winner, a ready --config), tune.json and tune.png into --out.
    """
    from lrpcli.cli.tune_run import run_tune  # imports torch: not for --help

    console = stderr_console()
    exit_with(
        console,
        lambda: run_tune(
            console, paths=list(paths or []), config=config, score=score, space=space, budget=budget,
            minutes=minutes, split=split, held_out=list(held_out or []), min_pixel_share=min_pixel_share, eta=eta, steps=steps, patch=patch,
            perturbation=perturbation, random_runs=random_runs, seed=seed, batch_size=batch_size,
            device=device, out=out, json_out=json_out, quiet=quiet, overwrite=overwrite,
            allow_python=list(allow_python or []),
        ),  # fmt: skip
    )
