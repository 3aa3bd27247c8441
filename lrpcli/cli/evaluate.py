"""``lrp evaluate``: the command's options; the run is in :mod:`lrpcli.cli.evaluate_run`."""

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
from lrpcli.cli.scale_options import ShardOption
from lrpcli.core.preset_names import PRESET_NAMES
from lrpcli.evaluation.choices import BASELINES, DEFAULT_BASELINES, ORDERS, PERTURBATIONS, OrderName, PerturbationName

__all__ = ["evaluate"]

EXAMPLES = examples(
    ("The config's rules against the default baselines; evaluation.json and .png in evaluation/", "lrp evaluate photos/ -o evaluation"),
    ("Two presets compared, most relevant first only, 50 steps", "lrp evaluate photos/ --composites epsilon_plus,epsilon_gamma_box --order morf --steps 50"),
    ("Add the occlusion baseline and the model-randomisation check", "lrp evaluate photos/ --baselines random,occlusion --sanity"),
)


@app.command(cls=Command, epilog=EXAMPLES)
def evaluate(
    paths: PathsArgument = None,
    config: ConfigOption = None,
    composites: Annotated[
        str | None,
        typer.Option(
            "--composites",
            metavar="A,B,...",
            help=f"LRP presets to evaluate (default: the config's rules): {', '.join(PRESET_NAMES)}.",
            show_default=False,
        ),
    ] = None,
    baselines: Annotated[
        str,
        typer.Option(
            "--baselines",
            metavar="A,B,...",
            help="Baselines to compare against ('' for none): "
            + "; ".join(f"{k}: {v}" for k, v in BASELINES.items())
            + ". Occlusion is opt-in (625 extra forward passes per image for a 224 crop in 9x9 patches).",
        ),
    ] = ",".join(DEFAULT_BASELINES),
    steps: Annotated[
        int, typer.Option("--steps", min=1, metavar="N", help="Perturbation steps L (one more patch per step).")
    ] = 100,
    patch: Annotated[
        int, typer.Option("--patch", min=1, metavar="P", help="Patch size in pixels of the model's input crop.")
    ] = 9,
    perturbation: Annotated[
        PerturbationName,
        typer.Option(
            "--perturbation",
            help="What perturbed patches become, in pixel space [0, 1] before normalisation: "
            + "; ".join(f"{k}: {v}" for k, v in PERTURBATIONS.items())
            + ".",
        ),
    ] = "uniform",
    order: Annotated[
        OrderName,
        typer.Option("--order", help="; ".join(f"{k}: {v}" for k, v in ORDERS.items()) + "."),
    ] = "both",
    random_runs: Annotated[
        int, typer.Option("--random-runs", min=1, metavar="R", help="Random orders averaged for the random baseline.")
    ] = 5,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            metavar="S",
            help="Seed of the uniform noise, tie-breaks and random orders, and of the random "
            "initialisation of a model built without weights (default: the config's model.seed, 0).",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option("--batch-size", "-b", min=1, metavar="N", help="Perturbed copies per forward pass (bounds memory)."),
    ] = 32,
    sanity: Annotated[
        bool,
        typer.Option(
            "--sanity",
            help="Model-randomisation check (Adebayo et al. 2018): re-initialise the top 1, top 3 "
            "and all Linear/Conv layers of a copy of the model and report the Spearman correlation "
            "of each LRP map with the original (lower = the map depends on the weights). Costs "
            "one LRP pass per LRP explainer, level and image.",
        ),
    ] = False,
    device: DeviceOption = DeviceChoice.auto,
    out: OutOption = Path("lrp-out"),
    json_out: JsonOption = False,
    quiet: QuietOption = False,
    overwrite: OverwriteOption = False,
    allow_python: AllowPythonOption = None,
    shard: ShardOption = None,
) -> None:
    """Pixel-flipping faithfulness: perturb patches in relevance order, write AOPC and curves.

    By default both orders run (MoRF, LeRF and SRG = AOPC_MoRF − AOPC_LeRF); every explainer
    is compared with the baselines (and LRP explainers with each other) by a paired bootstrap
    95% CI and the Wilcoxon signed-rank test (a better/worse verdict needs the CI to exclude 0
    and at least 6 images; otherwise: not distinguishable). Writes evaluation.json and evaluation.png into
    --out; --json prints evaluation.json.
    """
    from lrpcli.cli.evaluate_run import run_evaluate  # imports torch: not for --help

    console = stderr_console()
    exit_with(
        console,
        lambda: run_evaluate(
            console,
            paths=list(paths or []),
            config=config,
            composites=composites,
            baselines=baselines,
            steps=steps,
            patch=patch,
            perturbation=perturbation,
            order=order,
            random_runs=random_runs,
            seed=seed,
            batch_size=batch_size,
            sanity=sanity,
            device=device,
            out=out,
            json_out=json_out,
            quiet=quiet,
            overwrite=overwrite,
            allow_python=list(allow_python or []),
            shard=shard,
        ),
    )
