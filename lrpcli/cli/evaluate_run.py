"""The run behind ``lrp evaluate``: pixel-flipping curves and AOPC for LRP composites and baselines.

Config, model, device and inputs are handled by the same helpers as ``lrp explain``; images
are decoded and preprocessed by :mod:`lrpcli.images`; the maths is in :mod:`lrpcli.evaluate`,
the plot in :mod:`lrpcli.evaluate_plot`. Writes ``evaluation.json`` and ``evaluation.png``
into ``--out``; the ranking table goes to standard error, ``--json`` prints the document on
standard output.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from rich.text import Text

from lrpcli.cli.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Fail, error
from lrpcli.cli.loading import (
    discover_inputs,
    input_paths,
    load_cli_config,
    load_cli_model,
    make_explainer,
    resolve_device,
)
from lrpcli.cli.options import DeviceChoice
from lrpcli.config import Config
from lrpcli.core.composites import PRESETS
from lrpcli.evaluation.document import (
    EVALUATION_JSON,
    EVALUATION_PNG,
    ORDER_NAMES,
    evaluation_document,
    plot_labels,
)
from lrpcli.evaluation.flipping import (
    BASELINES,
    RANDOM,
    FlipSettings,
    ImageResult,
    PatchGrid,
    Ranker,
    baseline_ranker,
    evaluate_image,
    lrp_ranker,
    summarize,
)
from lrpcli.evaluation.plot import mean_se_text, plot_evaluation
from lrpcli.hints import did_you_mean
from lrpcli.io.decode import ImageLoadError, load_image
from lrpcli.io.files import atomic_write
from lrpcli.io.inputs import ImageInput
from lrpcli.io.preprocess import pixel_bounds, preprocess
from lrpcli.models.sources import describe
from lrpcli.models.spec import LoadedModel
from lrpcli.run.entries import now
from lrpcli.run.report import json_safe, pretty_json

__all__ = ["parse_names", "run_evaluate"]

def parse_names(text: str | None, valid: Sequence[str], option: str) -> list[str]:
    """A comma-separated list of names from ``valid`` (order kept, repeats dropped).

    An unknown name is a usage error that suggests the closest name and lists the valid ones.
    """
    names: list[str] = []
    for raw in (text or "").split(","):
        name = raw.strip()
        if not name or name in names:
            continue
        if name not in valid:
            hint = did_you_mean(name, valid)
            raise Fail(EXIT_USAGE, f"{option} {name!r}: unknown name{hint}; choose from: {', '.join(valid)}")
        names.append(name)
    return names


def _outputs(out: Path, inputs: list[ImageInput], named: list[str], overwrite: bool) -> list[ImageInput]:
    """Check the two output files; drop an earlier ``evaluation.png`` found while scanning."""
    targets = {os.path.realpath(out / name) for name in (EVALUATION_JSON, EVALUATION_PNG)}
    explicit = {os.path.realpath(p) for p in named}
    clash = targets & explicit
    if clash:
        first = sorted(clash)[0]
        raise Fail(EXIT_USAGE, f"--out {out}: writing the evaluation would replace the input {first}")
    for name in (EVALUATION_JSON, EVALUATION_PNG):
        path = out / name
        if (path.exists() or path.is_symlink()) and not overwrite:
            raise Fail(
                EXIT_USAGE, f"{path} already exists; use --overwrite to replace it or choose another --out"
            )
        if path.is_symlink() or path.is_dir():
            raise Fail(EXIT_USAGE, f"{path} is a symbolic link or a folder; refusing to write through it")
    return [item for item in inputs if os.path.realpath(item.path) not in targets]


def _rankers(
    loaded: LoadedModel, cfg: Config, composites: list[str], baselines: list[str]
) -> tuple[dict[str, Ranker], list[dict[str, str]]]:
    """A relevance-map function per composite and map baseline, and every explainer described."""
    rankers: dict[str, Ranker] = {}
    described: list[dict[str, str]] = []
    for name in composites:
        explainer = make_explainer(loaded, cfg, None if name == cfg.composite_name else name)
        rankers[name] = lrp_ranker(explainer)
        text = PRESETS[name].description if name in PRESETS else "the config's rules"
        description = f"LRP, {text}; relevance summed over channels"
        described.append({"name": name, "kind": "lrp", "description": description})
    for name in sorted(baselines, key=lambda n: n == RANDOM):  # evaluate_image adds random last
        if name != RANDOM:
            rankers[name] = baseline_ranker(name, loaded.module)
        described.append({"name": name, "kind": "baseline", "description": BASELINES[name]})
    return rankers, described


def run_evaluate(
    console: Console,
    *,
    paths: list[str],
    config: str | None,
    composites: str | None,
    baselines: str,
    steps: int,
    patch: int,
    perturbation: str,
    order: str,
    random_runs: int,
    seed: int,
    batch_size: int,
    device: DeviceChoice,
    out: Path,
    json_out: bool,
    quiet: bool,
    overwrite: bool,
) -> int:
    """Run ``lrp evaluate``; returns the exit code (usage and model errors raise ``_Fail``)."""
    started_at, started = now(), time.perf_counter()
    cfg = load_cli_config(config, {})
    if composites is None:
        composite_names = [cfg.composite_name]
    else:
        composite_names = parse_names(composites, list(PRESETS), "--composites")
    baseline_names = parse_names(baselines, list(BASELINES), "--baselines")
    if not composite_names and not baseline_names:
        raise Fail(EXIT_USAGE, "nothing to evaluate: --composites and --baselines are both empty")
    settings = FlipSettings(patch, steps, perturbation, order, random_runs, seed, batch_size)
    grid = _grid(cfg.preprocess.crop, patch, steps)
    inputs = _inputs(console, paths, out, overwrite)
    dev = resolve_device(device)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Fail(EXIT_USAGE, f"--out {out}: cannot create the folder ({exc})") from None

    if not quiet:
        console.print(Text(f"loading {describe(cfg.model)} on {dev}", style="dim"))
    loaded = load_cli_model(cfg, dev)
    rankers, described = _rankers(loaded, cfg, composite_names, baseline_names)
    low, high = pixel_bounds(cfg.preprocess)
    job = _Job(loaded, cfg, rankers, settings, low, high, RANDOM in baseline_names, dev, console, quiet)
    entries: list[dict[str, Any]] = []
    results: list[ImageResult] = []
    for index, item in enumerate(inputs):
        entry, result = _evaluate_one(job, item, index)
        entries.append(entry)
        if result is not None:
            results.append(result)

    summary = summarize(results, order)
    failed = sum(e["status"] != "ok" for e in entries)
    code = EXIT_FAILED if failed else EXIT_OK
    if results:
        labels = plot_labels(loaded, settings, grid, len(results))
        plot_evaluation(summary, out / EVALUATION_PNG, **labels)
    finished = time.perf_counter() - started
    doc = evaluation_document(
        cfg=cfg, loaded=loaded, device=dev, out=out, settings=settings, grid=grid, described=described,
        started_at=started_at, duration=finished, entries=entries, summary=summary, inputs=len(inputs),
        evaluated=len(results), exit_code=code,
    )  # fmt: skip
    text = pretty_json(json_safe(doc)) + "\n"
    atomic_write(out / EVALUATION_JSON, lambda handle: handle.write(text.encode("utf-8")))
    if json_out:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            pass
    if not quiet and results:
        console.print(_ranking_table(summary, order, len(results)))
    if failed:
        error(console, f"{failed} of {len(inputs)} images could not be evaluated; see {out / EVALUATION_JSON}")
    if not quiet:
        written = f"{out / EVALUATION_JSON}" + (f" and {out / EVALUATION_PNG}" if results else "")
        done = f"{len(results)} of {len(inputs)} images in {finished:.1f} s; wrote {written}"
        console.print(Text.assemble(("done ", "bold"), done))
    return code


def _grid(crop: int, patch: int, steps: int) -> PatchGrid:
    """The patch grid of the model's crop; usage errors for a patch or step count that does not fit."""
    try:
        grid = PatchGrid(crop, crop, patch)
    except ValueError as exc:
        raise Fail(EXIT_USAGE, f"--patch {patch}: {exc}") from None
    if steps > grid.count:
        raise Fail(
            EXIT_USAGE,
            f"--steps {steps}: a {crop}x{crop} crop has only {grid.count} patches of {patch}x{patch}; "
            f"use --steps {grid.count} or less, or a smaller --patch",
        )
    return grid


def _inputs(console: Console, paths: list[str], out: Path, overwrite: bool) -> list[ImageInput]:
    """The images to evaluate, found as ``lrp explain`` finds them (earlier outputs skipped)."""
    return discover_inputs(
        console,
        input_paths(paths, "evaluate"),
        out,
        check_outputs=lambda inputs, named: _outputs(out, inputs, named, overwrite),
    )


@dataclass(frozen=True)
class _Job:
    """What every image of a run is evaluated with."""

    loaded: LoadedModel
    cfg: Config
    rankers: dict[str, Ranker]
    settings: FlipSettings
    low: torch.Tensor
    high: torch.Tensor
    random: bool
    device: torch.device
    console: Console
    quiet: bool


def _evaluate_one(job: _Job, item: ImageInput, index: int) -> tuple[dict[str, Any], ImageResult | None]:
    """Evaluate one input: its ``images[]`` entry (status ``error`` if it cannot be read) and result."""
    start = time.perf_counter()
    entry: dict[str, Any] = {
        "index": index,
        "input": item.path.as_posix(),
        "status": "ok",
        "error": None,
        "warnings": [],
    }
    try:
        image = load_image(item.path, max_pixels=job.cfg.max_pixels)
        x, _ = preprocess(image.image, job.cfg.preprocess)
        image.image.close()
    except ImageLoadError as exc:
        entry.update(status="error", error=exc.reason)
        error(job.console, f"{item.path}: {exc.reason}")
        return entry, None
    entry["warnings"] = list(image.warnings)
    result = evaluate_image(
        job.loaded.module,
        x.to(job.device),
        job.rankers,
        job.settings,
        low=job.low,
        high=job.high,
        random=job.random,
        image=index,
    )
    categories = job.loaded.categories
    label = categories[result.target] if result.target < len(categories) else f"class {result.target}"
    entry["target"] = {
        "index": result.target,
        "label": label,
        "source": "predicted",
        "logit": result.logit,
        "probability": result.probability,
    }
    entry["explainers"] = {name: curve.to_dict() for name, curve in result.curves.items()}
    entry["elapsed_s"] = time.perf_counter() - start
    if not job.quiet:
        scores = ", ".join(f"{name} {curve.aopc_logit:.2f}" for name, curve in result.curves.items())
        line = f"{item.path}: {label} ({result.probability:.1%}); AOPC {scores}"
        job.console.print(Text.assemble(("ok ", "green"), line))
    return entry, result


def _ranking_table(summary: dict[str, Any], order: str, images: int) -> Table:
    """The ranking as a Rich table: AOPC on logits and on probabilities, mean ± standard error."""
    better = "higher" if order == "morf" else "lower"
    table = Table(
        title=f"pixel flipping, {ORDER_NAMES[order]}: {better} AOPC is better "
        f"({images} image(s); mean ± standard error)",
        header_style="bold",
    )
    table.add_column("rank", justify="right")
    table.add_column("explainer")
    table.add_column("AOPC (logit)", justify="right")
    table.add_column("AOPC (probability)", justify="right")
    for row in summary["ranking"]:
        stats = summary["explainers"][row["explainer"]]
        table.add_row(
            str(row["rank"]),
            row["explainer"],
            mean_se_text(stats["aopc_logit"], 3),
            mean_se_text(stats["aopc_probability"], 4),
        )
    return table
